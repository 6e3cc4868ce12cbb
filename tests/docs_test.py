#!/usr/bin/env python3
"""Holds the docs to the code.

Run from the repository root: `python3 tests/docs_test.py`. It exits non-zero, printing every
failure, when:

  a. README.md is longer than 250 lines (it is the front door; the manual lives in docs/);
  b. a doc calls "planned" (or "not yet built", "to come") something that is built: a workspace
     member (by directory or package name) or a binary (a [[bin]] of a member, or a Function
     resource of template.yaml);
  c. a section the code cites ("<section sign>N" in *.rs, *.py, *.sh, template.yaml,
     openapi.json) is missing from docs/ARCHITECTURE.md's index, or has no
     docs/architecture/NN-*.md whose first heading names it;
  d. a relative markdown link in README.md or docs/ points at no file.

`--docs-root DIR` reads README.md and docs/ from DIR instead of the repository (the code, the
workspace and template.yaml are still read from the repository), so that the checks can be run
against another copy of the docs.
"""

import argparse
import os
import re
import sys
import tomllib
from pathlib import Path

SECTION = "\u00a7"
README_MAX_LINES = 250
# The phrases that say a thing is not built yet.
PLANNED = re.compile(r"\bplanned\b|\bnot yet built\b|\bnot built yet\b|\bto come\b", re.IGNORECASE)
# Contexts that may be called planned while no workspace member of that name exists.
ALLOWED_PLANNED = {"onboarding"}
CODE_SUFFIXES = {".rs", ".py", ".sh"}
CODE_FILES = {"template.yaml", "openapi.json"}
SKIP_DIRS = {"target", ".cache", ".git", "node_modules"}
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def doc_files(docs_root):
    files = [docs_root / "README.md"]
    files += sorted((docs_root / "docs").rglob("*.md"))
    return [f for f in files if f.is_file()]


def built_names(repo):
    """Names of what is built: workspace members (directory and package names), their [[bin]]
    names, and the Function resources of template.yaml (by logical id)."""
    names = set()
    workspace = tomllib.loads((repo / "Cargo.toml").read_text())
    # A member may be a glob (`functions/*`): every directory it names with a Cargo.toml.
    members = [m for pattern in workspace["workspace"]["members"] for m in sorted(repo.glob(pattern))]
    for member in members:
        manifest_path = member / "Cargo.toml"
        names.add(member.name)
        if not manifest_path.is_file():
            continue
        manifest = tomllib.loads(manifest_path.read_text())
        names.add(manifest["package"]["name"])
        for binary in manifest.get("bin", []):
            names.add(binary["name"])
    template = repo / "template.yaml"
    if template.is_file():
        lines = template.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^  ([A-Za-z0-9]+):\s*$", line)
            if m and any("Type: AWS::Serverless::Function" in l for l in lines[i + 1 : i + 4]):
                names.add(m.group(1))
    return names


def units(text):
    """The sentences of a markdown text: each line of a fenced block, each table row, and the
    sentences of each paragraph or list item (its wrapped lines joined)."""
    out, block, fence = [], [], False

    def flush():
        if block:
            out.extend(s for s in re.split(r"(?<=[.!?])\s+", " ".join(block)) if s.strip())
            block.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            fence = not fence
            continue
        if fence or stripped.startswith("|"):
            flush()
            out.append(stripped)
        elif not stripped or re.match(r"^(#+ |[-*] |\d+\. )", stripped):
            flush()
            if stripped:
                block.append(stripped)
        else:
            block.append(stripped)
    flush()
    return out


def names_in(sentence, names):
    found = set()
    for name in names:
        # A name counts as a word of its own: not part of a longer identifier or path segment.
        if re.search(r"(?<![\w-])" + re.escape(name) + r"(?![\w-])", sentence, re.IGNORECASE):
            found.add(name)
    return found


def check_readme_length(docs_root):
    readme = docs_root / "README.md"
    n = len(readme.read_text().splitlines())
    if n > README_MAX_LINES:
        return [f"README.md has {n} lines, more than {README_MAX_LINES}: move the manual to docs/"]
    return []


def check_planned(repo, docs_root):
    built = built_names(repo)
    allowed = ALLOWED_PLANNED - {n.lower() for n in built}
    failures = []
    for doc in doc_files(docs_root):
        for sentence in units(doc.read_text()):
            if not PLANNED.search(sentence):
                continue
            named = names_in(sentence, built)
            # A context allowed to be planned stops being allowed once it is a member.
            named |= {n for n in names_in(sentence, ALLOWED_PLANNED) if n not in allowed}
            if named:
                rel = doc.relative_to(docs_root)
                failures.append(f"{rel}: calls planned what is built ({', '.join(sorted(named))}): {sentence[:200]}")
    return failures


def code_files(repo):
    # os.walk, pruned before it descends: target/ changes under a running build.
    for directory, subdirs, files in os.walk(repo):
        subdirs[:] = [d for d in subdirs if d not in SKIP_DIRS]
        for name in files:
            path = Path(directory) / name
            if path.suffix in CODE_SUFFIXES or name in CODE_FILES:
                yield path


def check_sections(repo, docs_root):
    cited = {}
    for path in code_files(repo):
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError):
            # Not text, or moved away by a concurrent edit since the walk listed it.
            continue
        for m in re.finditer(SECTION + r"(\d+)", text):
            cited.setdefault(int(m.group(1)), path.relative_to(repo))
    failures = []
    index_path = docs_root / "docs" / "ARCHITECTURE.md"
    index = index_path.read_text() if index_path.is_file() else ""
    arch = docs_root / "docs" / "architecture"
    for n, where in sorted(cited.items()):
        files = sorted(arch.glob(f"{n:02d}-*.md")) if arch.is_dir() else []
        if not files:
            failures.append(f"{SECTION}{n} (cited in {where}): no docs/architecture/{n:02d}-*.md")
            continue
        if len(files) > 1:
            failures.append(f"{SECTION}{n}: more than one file: {', '.join(f.name for f in files)}")
        section_file = files[0]
        heading = next((l for l in section_file.read_text().splitlines() if l.startswith("#")), "")
        if not re.search(SECTION + str(n) + r"(?!\d)", heading):
            failures.append(f"{SECTION}{n}: the first heading of {section_file.name} does not name it: {heading!r}")
        rows = [l for l in index.splitlines() if re.search(SECTION + str(n) + r"(?!\d)", l)]
        if not any(f"architecture/{section_file.name}" in row for row in rows):
            failures.append(f"{SECTION}{n} (cited in {where}): docs/ARCHITECTURE.md's index has no line linking it to architecture/{section_file.name}")
    return failures


def check_links(docs_root):
    failures = []
    for doc in doc_files(docs_root):
        fence = False
        for number, line in enumerate(doc.read_text().splitlines(), start=1):
            if line.strip().startswith("```"):
                fence = not fence
                continue
            if fence:
                continue
            # Inline code is not a link.
            line = re.sub(r"`[^`]*`", "", line)
            for m in LINK.finditer(line):
                target = m.group(1)
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
                    continue
                path = target.split("#", 1)[0]
                if not (doc.parent / path).exists():
                    failures.append(f"{doc.relative_to(docs_root)}:{number}: the link {target} points at no file")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("."), help="the repository root (default: .)")
    parser.add_argument("--docs-root", type=Path, help="where README.md and docs/ are read (default: the repository)")
    args = parser.parse_args()
    repo = args.repo.resolve()
    docs_root = (args.docs_root or repo).resolve()
    checks = [
        ("a. README length", lambda: check_readme_length(docs_root)),
        ("b. nothing built called planned", lambda: check_planned(repo, docs_root)),
        ("c. cited sections resolve", lambda: check_sections(repo, docs_root)),
        ("d. relative links resolve", lambda: check_links(docs_root)),
    ]
    failed = 0
    for name, check in checks:
        failures = check()
        print(f"{'FAIL' if failures else 'ok  '} {name}")
        for failure in failures:
            print(f"     {failure}")
        failed += len(failures)
    if failed:
        print(f"{failed} failure(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
