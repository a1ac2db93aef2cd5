#!/usr/bin/env python3
"""Read JSON documents veil wrote, as another program would, and check each
against its published schema (docs/schemas/NAME.schema.json).

    check.py SCHEMA_DIR NAME FILE [FILE ...]

A FILE ending in .jsonl is read a line at a time, each line one document.
Prints one line per file and exits 1 if any document does not match its
schema, 2 on bad usage. Needs the PyPI package jsonschema.
"""

import json
import pathlib
import sys

import jsonschema


def documents(path):
    text = pathlib.Path(path).read_text(encoding="utf-8")
    if path.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return [json.loads(text)]


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    schema_dir, name, files = pathlib.Path(argv[1]), argv[2], argv[3:]
    schema = json.loads((schema_dir / f"{name}.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    failed = False
    for path in files:
        docs = documents(path)
        errors = [e for doc in docs for e in validator.iter_errors(doc)]
        versions = sorted({d.get("version") for d in docs if isinstance(d, dict)} - {None})
        if errors:
            failed = True
            first = errors[0]
            where = "/".join(str(p) for p in first.absolute_path) or "(top)"
            print(f"{name} {path}: {len(errors)} error(s); at {where}: {first.message}")
        else:
            print(f"{name} {path}: ok ({len(docs)} document(s), version {versions or 'none'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
