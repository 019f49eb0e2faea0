"""`graphengine templates list|show|check|render`: the template store for scripts.

    graphengine templates list                          names, bundled/user, description
    graphengine templates show NAME [--json]            the template document
    graphengine templates check NAME_OR_FILE [--json]   placeholder report (exit 1 if something is flagged)
    graphengine templates render NAME_OR_FILE --set prompt="a cat" --set seed=5 [-o prompt.json]

``render`` prints the API-format prompt (``{"prompt": …}`` with ``--wrap``), ready for ``POST /prompt``
or ``graphengine run``. Values given with ``--set`` are converted to the types the nodes declare.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from graphengine.commands.options import add_location_options, data_dir


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "templates",
        help="list, show, check and render workflow templates",
        description=__doc__.splitlines()[0],
    )
    actions = parser.add_subparsers(dest="templates_action", required=True, metavar="ACTION")

    list_parser = actions.add_parser("list", help="list bundled and user templates")
    list_parser.add_argument("--json", action="store_true", help="print JSON")
    add_location_options(list_parser)

    show = actions.add_parser("show", help="print a template")
    show.add_argument("template", help="template name, or a .json file")
    show.add_argument("--json", action="store_true", help="print the whole document as JSON (default: a summary)")
    add_location_options(show)

    check_parser = actions.add_parser("check", help="report a template's placeholders")
    check_parser.add_argument("template", help="template name, or a .json file")
    check_parser.add_argument("--json", action="store_true", help="print the report as JSON")
    check_parser.add_argument("--no-registry", action="store_true", help="do not check node types and inputs")
    add_location_options(check_parser)

    render_parser = actions.add_parser("render", help="fill a template's placeholders and print the API prompt")
    render_parser.add_argument("template", help="template name, or a .json file")
    render_parser.add_argument("--set", dest="values", action="append", metavar="NAME=VALUE", default=[],
                               help="a placeholder value (repeatable), e.g. --set prompt='a cat' --set seed=5")
    render_parser.add_argument("--no-typed", action="store_true",
                               help="insert values as given (SillyTavern-like: no conversion to the declared input types)")
    render_parser.add_argument("--wrap", action="store_true", help='print {"prompt": ...} as POST /prompt expects')
    render_parser.add_argument("-o", "--output", type=Path, help="write to this file instead of standard output")
    add_location_options(render_parser)

    parser.set_defaults(handler=_handle)


def _registry() -> Any:
    from graphengine.packs import builtin_packs
    from graphengine.registry import NodeRegistry

    return NodeRegistry(builtin_packs())


def _handle(args: argparse.Namespace) -> int:
    from graphengine.templates import StoreError, TemplateError

    try:
        return _ACTIONS[args.templates_action](args)
    except TemplateError as exc:
        for problem in exc.problems:
            print(f"error: {problem.message}" + (f" ({problem.details})" if problem.details else ""), file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2


def _list(args: argparse.Namespace) -> int:
    from graphengine.templates import TemplateStore

    store = TemplateStore.for_data_dir(data_dir(args))
    rows = []
    for item in store.list():
        if isinstance(item, tuple):
            rows.append({"name": item[0], "bundled": False, "description": "", "error": item[1].message})
        else:
            rows.append({"name": item.name, "bundled": item.bundled, "description": item.template.description})
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    for row in rows:
        kind = "bundled" if row["bundled"] else "user"
        text = row.get("error") and f"unreadable: {row['error']}" or row["description"].split("\n")[0]
        print(f"{row['name']:<{width}}  {kind:<7}  {text}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from graphengine.templates import check, load_template

    template = load_template(args.template, data_dir(args))
    if args.json:
        print(json.dumps(template.to_json(), indent=2, ensure_ascii=False))
        return 0
    report = check(template)
    print(f"{template.name}: {template.description}")
    print(f"nodes: {len(template.workflow)}")
    used = [p["name"] for p in report["predefined"] if p["present"]] + [c["name"] for c in report["custom"]]
    print("placeholders: " + (", ".join(used) or "none"))
    for name, value in template.defaults.items():
        shown = value if not isinstance(value, str) or len(value) <= 60 else value[:57] + "..."
        print(f"  default {name} = {json.dumps(shown, ensure_ascii=False)}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from graphengine.templates import check, load_template

    template = load_template(args.template, data_dir(args))
    report = check(template, None if args.no_registry else _registry())
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 1 if report["flagged"] else 0
    print(f"template {template.name}")
    for item in report["predefined"]:
        mark = "✅" if item["present"] else "❌"
        places = ", ".join(f"{o['node_id']}.{o['input'] or '/'.join(map(str, o['path']))}" for o in item["occurrences"])
        print(f"  {mark} %{item['name']}%" + (f"  ({places})" if places else ""))
    for item in report["custom"]:
        places = ", ".join(f"{o['node_id']}.{o['input']}" for o in item["occurrences"])
        print(f"  custom %{item['name']}%  ({places or 'unused'}) default={json.dumps(item['default'])}")
    for flag in report["flagged"]:
        print(f"  ⚠ {flag['message']}")
    if report["missing_values"]:
        print("  needs values: " + ", ".join(report["missing_values"]))
    return 1 if report["flagged"] else 0


def _render(args: argparse.Namespace) -> int:
    from graphengine.templates import parse_set_options, render_for_cli

    try:
        values = parse_set_options(args.values)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    prompt = render_for_cli(args.template, values, data_dir(args), None if args.no_typed else _registry())
    document = {"prompt": prompt} if args.wrap else prompt
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


_ACTIONS = {"list": _list, "show": _show, "check": _check, "render": _render}
