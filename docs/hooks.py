"""MkDocs hooks: the reference pages are generated when the site is built, so they cannot drift from the code.

A page marks what it wants with an HTML comment, replaced in `on_page_markdown`:

- `<!-- generated: cli -->`: every `ganaug` command in the order `ganaug --help` lists them, from Click's own
  objects: its help (the Examples block as code) and a table of its arguments and options;
- `<!-- generated: config -->`: every config key from the JSON Schema of `ganaug.config.json_schema()` (the
  pydantic models, whose docstrings are the keys' descriptions), one section per config section; without that
  function the build fails;
- `<!-- generated: readme -->`: the README, so the site's home page is the repository's front door, with its
  links into docs/ made relative to the site.

The functions are importable without MkDocs (tests/test_docs.py calls them).
"""

from __future__ import annotations

import html
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]

# A marker stands alone on its line (one quoted in the text, as in a code span, is left as it is).
MARKER = re.compile(r"^<!-- generated: (?P<kind>[\w-]+) -->$", re.M)


# ----------------------------------------------------------------------------------------------------
# Markdown helpers.

_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def _outside_code(text: str, f: Callable[[str], str]) -> str:
    """Apply `f` to the parts of `text` outside backtick code spans."""
    out, last = [], 0
    for m in _CODE_SPAN.finditer(text):
        out.append(f(text[last:m.start()]))
        out.append(m.group(0))
        last = m.end()
    out.append(f(text[last:]))
    return "".join(out)


def prose(text: str) -> str:
    """Plain text (a docstring, a help string) as Markdown that shows it as written: `<out_dir>` is not a tag and
    `*` or `_` start no emphasis; backtick spans stay code."""
    return _outside_code(text, lambda s: re.sub(r"([*_\[\]])", r"\\\1", html.escape(s, quote=False)))


def cell(text: str) -> str:
    """A table cell: one line, its pipes escaped where they would split the row (not inside code spans)."""
    return _outside_code(" ".join(str(text).split()), lambda s: s.replace("|", "\\|"))


def code(value: str) -> str:
    """`value` as a code span, with enough backticks to hold the ones it contains."""
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", value)), default=0) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{ticks}{pad}{value}{pad}{ticks}"


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# The CLI reference, from Click.


def help_markdown(text: str) -> str:
    """A Click help text as Markdown: paragraphs as prose; a `\\b` block (Click's "do not rewrap") as code, its
    heading line ("Examples:") in bold above it."""
    parts = []
    for para in re.split(r"\n\s*\n", inspect.cleandoc(text or "")):
        lines = para.splitlines()
        if lines and lines[0].strip() == "\b":
            lines = lines[1:]
            if lines and lines[0].rstrip().endswith(":") and not lines[0].startswith(" "):
                parts.append(f"**{prose(lines[0].strip())}**")
                lines = lines[1:]
            parts.append("```\n" + inspect.cleandoc("\n".join(lines)) + "\n```")
        elif para.strip():
            parts.append(prose(" ".join(para.split())))
    return "\n\n".join(parts)


def metavar(param: Any, ctx: Any) -> str:
    """How --help names an argument (Click 8.2 added the context parameter)."""
    try:
        return param.make_metavar(ctx)
    except TypeError:
        return param.make_metavar()


def _unset(value: Any) -> bool:
    return value is None or value is getattr(sys.modules.get("click.core"), "UNSET", object())


def _param_row(param: Any, ctx: Any) -> Optional[Tuple[str, str, str, str]]:
    """(flags, type, default, help) of a Click parameter; None for a hidden option."""
    import click

    if isinstance(param, click.Argument):
        flags, help_ = metavar(param, ctx), ""
    else:
        record = param.get_help_record(ctx)
        if record is None:
            return None
        flags, help_ = record[0], param.help or ""
        if isinstance(param.type, click.Choice) and flags.endswith("]"):
            flags = flags.rsplit(" ", 1)[0]  # the choices go in their own column
    if isinstance(param.type, click.Choice):
        kind = "one of " + ", ".join(code(str(c)) for c in param.type.choices)
    elif getattr(param, "is_flag", False):
        kind = "flag"
    else:
        kind = param.type.name
    if param.multiple:
        kind += ", repeatable"
    default = param.get_default(ctx, call=False)
    if param.required:
        shown = "required"
    elif getattr(param, "is_flag", False) and isinstance(default, bool):
        shown = "on" if default else "off"
    elif _unset(default) or callable(default) or default == ():
        shown = ""
    else:
        shown = code(str(default))
    return code(flags), kind, shown, prose(help_)


def command_markdown(name: str, cmd: Any, parent: Any, level: int = 2) -> str:
    import click

    ctx = click.Context(cmd, info_name=name, parent=parent)
    usage = " ".join(ctx.command_path.split()) + " " + " ".join(cmd.collect_usage_pieces(ctx))
    parts = [f"{'#' * level} {code(ctx.command_path)} {{ #{name} }}", f"```\n{usage.strip()}\n```",
             help_markdown(cmd.help or "")]
    rows = [r for p in cmd.params if (r := _param_row(p, ctx)) is not None]
    if rows:
        parts.append(table(["option", "type", "default", "what"], rows))
    if cmd.epilog:
        parts.append(prose(" ".join(cmd.epilog.split())))
    return "\n\n".join(p for p in parts if p)


def cli_commands(group: Any = None) -> List[str]:
    """The group's command names, in the order its --help lists them."""
    import click

    group = group if group is not None else _main_group()
    return list(group.list_commands(click.Context(group, info_name="ganaug")))


def _checkout() -> None:
    """Import this checkout's ganaug, whatever an installed copy points at (MkDocs restores sys.path after loading a
    hook, so this runs when a page is built)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def _main_group() -> Any:
    _checkout()
    from ganaug.cli import main

    return main


def cli_reference(group: Any = None) -> str:
    """Markdown for the whole command group: its own help and epilog, then every command it lists."""
    import click

    group = group if group is not None else _main_group()
    ctx = click.Context(group, info_name="ganaug")
    parts = [f"## {code(ctx.command_path)} {{ #{ctx.command_path} }}",
             "Read from the commands themselves when the site is built: `ganaug --help` and `ganaug COMMAND --help` "
             "say the same.", help_markdown(group.help or "")]
    rows = [r for p in group.get_params(ctx) if (r := _param_row(p, ctx)) is not None]  # --version, --help
    parts.append(table(["option", "type", "default", "what"], rows))
    if group.epilog:
        parts.append(prose(" ".join(group.epilog.split())))
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is not None and not cmd.hidden:
            parts.append(command_markdown(name, cmd, ctx))
    return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------------------------------------------
# The config reference, from the JSON Schema of the pydantic models.


class SchemaPage:
    """Renders a pydantic v2 JSON Schema (`model_json_schema(by_alias=True)`) as one section per config section."""

    def __init__(self, schema: Dict[str, Any]):
        self.schema = schema
        self.defs: Dict[str, Any] = schema.get("$defs", {})
        self.sections: List[str] = []  # rendered sub-sections, in the order they were met
        self.anchors: Dict[str, str] = {}  # a model's $ref -> the anchor of the section that shows it

    # --- types --------------------------------------------------------------------------------------

    def resolve(self, s: Dict[str, Any]) -> Dict[str, Any]:
        """A schema with its $ref (or a one-element allOf, as older pydantic wrote a described $ref) looked up."""
        if "allOf" in s and len(s["allOf"]) == 1:
            s = {**{k: v for k, v in s.items() if k != "allOf"}, **s["allOf"][0]}
        if "$ref" in s:
            target = self.defs[s["$ref"].split("/")[-1]]
            return {**target, **{k: v for k, v in s.items() if k != "$ref"}}
        return s

    @staticmethod
    def ref(s: Dict[str, Any]) -> Optional[str]:
        if "allOf" in s and len(s["allOf"]) == 1:
            s = s["allOf"][0]
        return s.get("$ref")

    @staticmethod
    def non_null(s: Dict[str, Any]) -> Tuple[Dict[str, Any], bool]:
        """(the schema without its null option, whether null was allowed)."""
        options = s.get("anyOf") or s.get("oneOf")
        if options and any(o.get("type") == "null" for o in options):
            rest = [o for o in options if o.get("type") != "null"]
            outer = {k: v for k, v in s.items() if k not in ("anyOf", "oneOf", "default")}
            return ({**outer, **rest[0]} if len(rest) == 1 else {**outer, "anyOf": rest}), True
        if isinstance(s.get("type"), list) and "null" in s["type"]:
            return {**s, "type": [t for t in s["type"] if t != "null"]}, True
        return s, s.get("type") == "null"

    def families(self, s: Dict[str, Any]) -> Optional[List[Tuple[List[str], Dict[str, Any]]]]:
        """A union of models told apart by their `name` key: [(names, model schema)], else None."""
        options = s.get("oneOf") or s.get("anyOf")
        if not options or not all(self.ref(o) for o in options):
            return None
        mapping = (s.get("discriminator") or {}).get("mapping") or {}
        out = []
        for o in options:
            model = self.resolve(o)
            names = [n for n, r in mapping.items() if r == self.ref(o)]
            if not names:
                name = model.get("properties", {}).get("name", {})
                names = [name["const"]] if "const" in name else list(name.get("enum", []))
            if not names:
                return None
            out.append((names, model))
        return out

    def type_text(self, s: Dict[str, Any], path: str) -> str:
        """What a key takes, in words; models get a section of their own (linked)."""
        s, nullable = self.non_null(s)
        text = self._type_text(s, path)
        return f"{text}, or `null`" if nullable and text != "`null`" else text

    def _type_text(self, s: Dict[str, Any], path: str) -> str:
        ref = self.ref(s)
        if ref:
            return f"[section](#{self.model_section(ref, path)})"
        fams = self.families(s)
        if fams:
            return f"a generator section ([by `name`](#{self.family_sections(fams, s, path)}))"
        if "const" in s:
            return code(json.dumps(s["const"]) if not isinstance(s["const"], str) else s["const"])
        if "enum" in s:
            return "one of " + ", ".join(code(v if isinstance(v, str) else json.dumps(v)) for v in s["enum"])
        options = s.get("anyOf") or s.get("oneOf")
        if options:
            return " or ".join(self._type_text(self.non_null(o)[0], path) for o in options)
        t = s.get("type")
        if isinstance(t, list):
            return " or ".join(self._type_text({**s, "type": x}, path) for x in t)
        if t == "array":
            if "prefixItems" in s:
                return "[" + ", ".join(self._type_text(i, path) for i in s["prefixItems"]) + "]"
            items = s.get("items", {})
            if self.ref(items):
                return f"list of [sections](#{self.model_section(self.ref(items), path + '[]')})"
            return "list of " + self._plural(self._type_text(items, path)) if items else "list"
        if t == "object":
            extra = s.get("additionalProperties")
            if isinstance(extra, dict) and extra:
                return "mapping of a name to " + self._type_text(extra, path + ".NAME")
            return "mapping"
        words = {"string": "string", "integer": "integer", "number": "number", "boolean": "`true` or `false`",
                 "null": "`null`"}
        text = words.get(t, t or "any")
        bounds = [f"{op} {s[k]}" for k, op in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"),
                                              ("exclusiveMaximum", "<")) if k in s]
        if "pattern" in s:
            bounds.append("matching " + code(s["pattern"]))
        return text + (" " + ", ".join(bounds) if bounds else "")

    @staticmethod
    def _plural(text: str) -> str:
        return {"string": "strings", "integer": "integers", "number": "numbers"}.get(text, text)

    # --- sections -----------------------------------------------------------------------------------

    @staticmethod
    def anchor(path: str) -> str:
        return re.sub(r"[^a-z0-9]+", "-", path.lower().replace("[]", "-item")).strip("-")

    def model_section(self, ref: str, path: str) -> str:
        """The anchor of the section showing the model at `ref`, rendering it under `path` on first use (before the
        sections of the models it holds)."""
        if ref not in self.anchors:
            self.anchors[ref] = self.anchor(path)
            slot = len(self.sections)
            self.sections.append("")
            self.sections[slot] = self.section(path, self.defs[ref.split("/")[-1]])
        return self.anchors[ref]

    def family_sections(self, fams: List[Tuple[List[str], Dict[str, Any]]], union: Dict[str, Any], path: str) -> str:
        """The keys every generator family reads, the keys some families share (the GANs' latent and augmentation,
        StyleGAN2's sizes), then each family's own: sub-sections of `path`'s section. Returns the anchor of the
        first (a second union of the same families links there)."""
        key = json.dumps(sorted(n for names, _ in fams for n in names))
        if key in self.anchors:
            return self.anchors[key]
        anchor = self.anchors[key] = self.anchor(path) + "-shared"
        # Each key, by its schema, goes to the families that read it exactly so.
        readers: Dict[Tuple[str, str], List[int]] = {}
        for i, (_, model) in enumerate(fams):
            for k, v in model.get("properties", {}).items():
                if k != "name":
                    readers.setdefault((k, json.dumps(v, sort_keys=True)), []).append(i)
        groups: Dict[Tuple[int, ...], List[str]] = {}
        for (k, _), who in readers.items():
            groups.setdefault(tuple(who), []).append(k)
        everyone = tuple(range(len(fams)))
        names_text = ", ".join(code(n) for names, _ in fams for n in names)
        default = union.get("default") if isinstance(union.get("default"), dict) else {}  # the section's, not a family's
        lines = [f"### Keys every family reads {{ #{anchor} }}",
                 "`name` picks the family; every family reads these keys, and each the keys below that name it.",
                  self.keys_table(path, fams[0][1], only=["name"] + groups.get(everyone, []),
                                 name=("one of " + names_text, code(default["name"]) if "name" in default else ""))]
        group_anchor: Dict[Tuple[int, ...], str] = {}
        for who, keys in groups.items():
            if who == everyone or len(who) < 2:
                continue
            first = [fams[i][0][0] for i in who]
            group_anchor[who] = f"{self.anchor(path)}-{'-'.join(self.anchor(n) for n in first)}"
            lines += [f"### Keys of {', '.join(code(n) for n in first)} {{ #{group_anchor[who]} }}",
                      self.keys_table(path, fams[who[0]][1], only=keys)]
        for i, (names, model) in enumerate(fams):
            own = groups.get((i,), [])
            lines.append(f"### `name: {names[0]}` {{ #{self.anchor(path)}-{self.anchor(names[0])} }}")
            if model.get("description"):
                lines.append(prose(" ".join(model["description"].split())))
            also = [f"[{', '.join(code(fams[j][0][0]) for j in who)}](#{a})" for who, a in group_anchor.items() if i in who]
            said = (["Also `name: " + "`, `name: ".join(names[1:]) + "`."] if len(names) > 1 else [])
            said += ["Reads the keys of " + " and of ".join(also) + "."] if also else []
            if said:
                lines.append(" ".join(said))
            lines.append(self.keys_table(path, model, only=own) if own else "No keys of its own.")
        self.sections.append("\n\n".join(lines))
        return anchor

    def keys_table(self, path: str, model: Dict[str, Any], only: Optional[List[str]] = None,
                   name: Optional[Tuple[str, str]] = None) -> str:
        """A table of the model's keys (or `only` these); `name`: the (type, default) shown for the `name` key of a
        union of families, whose own schemas each default to their own name."""
        props = model.get("properties", {})
        required = set(model.get("required", []))
        rows = []
        for key in (only if only is not None else list(props)):
            s = props[key]
            if key == "name" and name is not None:
                kind, default = name
            else:
                kind, default = self.type_text(s, f"{path}.{key}"), self.default_text(s, key in required)
            rows.append((code(key), kind, default, prose(self.description(s))))
        return table(["key", "type", "default", "what"], rows)

    def default_text(self, s: Dict[str, Any], required: bool) -> str:
        if "default" in s:
            d = s["default"]
            return code(d if isinstance(d, str) else json.dumps(d, ensure_ascii=False))
        if required:
            return "required"
        target = self.resolve(s) if self.ref(s) else None
        return "its keys' defaults" if target and target.get("type") == "object" else ""

    def description(self, s: Dict[str, Any]) -> str:
        text = s.get("description")
        if not text and self.ref(s):
            text = (self.resolve(s).get("description") or "").split("\n\n")[0]
        return " ".join((text or "").split())

    def section(self, path: str, model: Dict[str, Any], lead: str = "", nullable: bool = False) -> str:
        """A config section: its description, then its keys (nested models get sections of their own, after it)."""
        level = "##" if "." not in path and not path.endswith("[]") else "###"
        body = [f"{level} {code(path)} {{ #{self.anchor(path)} }}"]
        desc = (model.get("description") or "").strip()
        if lead and lead != " ".join(desc.split("\n\n")[0].split()):
            body.append(prose(lead))
        body += [prose(" ".join(p.split())) for p in desc.split("\n\n") if p.strip()]
        if nullable:
            body.append("Optional: `null` leaves the section out.")
        body.append(self.keys_table(path, model))
        return "\n\n".join(body)

    def render(self) -> str:
        """The top-level keys, then one section per config section in the schema's order."""
        props = self.schema.get("properties", {})
        required = set(self.schema.get("required", []))
        top_rows, parts = [], []
        sections: List[Tuple[str, Dict[str, Any], str]] = []
        for key, s in props.items():
            inner, _ = self.non_null(s)
            extra = inner.get("additionalProperties") if inner.get("type") == "object" else None
            kind = ("section" if self.ref(inner) else "generator section" if self.families(inner)
                    else "list of sections" if self.ref(inner.get("items", {}))
                    else "mapping of generator sections" if isinstance(extra, dict) and self.families(extra) else "")
            default = self.default_text(s, key in required)
            if kind:
                sections.append((key, s, kind))
                if len(default) > 40:
                    default = "see its section"
                first = re.match(r"(.+?\.)\s", self.description(s))  # its first sentence: the section says the rest
                top_rows.append((f"[{code(key)}](#{self.anchor(key)})", kind, default,
                                 prose(first.group(1) if first else self.description(s))))
            else:
                top_rows.append((code(key), self.type_text(s, key), default, prose(self.description(s))))
        if self.schema.get("description"):
            parts.append(prose(" ".join(self.schema["description"].split())))
        parts.append(table(["key", "type", "default", "what"], top_rows))
        for key, s, kind in sections:
            start = len(self.sections)
            inner, nullable = self.non_null(s)
            head = f"## {code(key)} {{ #{self.anchor(key)} }}"
            lead = prose(self.description(s))
            if kind == "generator section":
                target = self.family_sections(self.families(inner) or [], inner, key)
                text = [head, lead, f"One generator section: [the keys every family reads](#{target}), then its family's."]
            elif kind == "mapping of generator sections":
                target = self.family_sections(self.families(inner["additionalProperties"]) or [], inner, "gan")
                text = [head, lead, "A mapping of a name of your choice to a generator section with the keys of "
                        f"[`gan`](#{target}); every arm that uses fakes names its generator."
                        + (" `null`: the one `gan:`." if nullable else "")]
            elif kind == "list of sections":
                anchor = self.model_section(self.ref(inner["items"]), key + "[]")
                text = [head, lead, f"A list; each item has the keys of [`{key}[]`](#{anchor})."]
            else:
                ref = self.ref(inner)
                if ref in self.anchors:
                    text = [head, lead, f"The keys of [this section](#{self.anchors[ref]})."]
                else:
                    self.anchors[ref] = self.anchor(key)
                    text = [self.section(key, self.defs[ref.split("/")[-1]], self.description(s), nullable)]
            sub = self.sections[start:]
            del self.sections[start:]
            parts.append("\n\n".join([t for t in text if t] + sub))
        return "\n\n".join(parts) + "\n"


def config_reference(schema: Dict[str, Any]) -> str:
    return SchemaPage(schema).render()


def config_schema() -> Dict[str, Any]:
    """`ganaug.config.json_schema()`: the config page has no other source (an import error fails the build)."""
    _checkout()
    from ganaug.config import json_schema

    return json_schema()


# ----------------------------------------------------------------------------------------------------
# The README as the site's home page.


def readme_home(text: str) -> str:
    """The README with its links into docs/ relative to the site, so one file is both front doors."""
    return re.sub(r"\]\(docs/", "](", text)


# ----------------------------------------------------------------------------------------------------
# The hook.


def generated(kind: str) -> str:
    if kind == "cli":
        return cli_reference()
    if kind == "config":
        return config_reference(config_schema())
    if kind == "readme":
        return readme_home((ROOT / "README.md").read_text())
    raise ValueError(f"unknown generated block '{kind}' (cli, config or readme)")


def on_page_markdown(markdown: str, page: Any = None, config: Any = None, files: Any = None, **kwargs: Any) -> str:
    return MARKER.sub(lambda m: generated(m.group("kind")), markdown)
