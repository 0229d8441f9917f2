"""A parse check for Apptainer definition files, for where ``apptainer`` itself is not installed.

It reads a .def the way Apptainer does (header keywords, then ``%section`` blocks) and reports what
would break or mislead a build: an unknown bootstrap agent or section, a missing ``From``, a section
given twice, a ``{{ VAR }}`` with no default in ``%arguments``, a ``%files`` source that does not exist
(relative to the build directory, the repository root), and no ``%test`` or ``%labels``. ``%post`` and
``%test`` are also syntax-checked with ``bash -n``.

``python -m tests.tools.deffile apptainer/*.def`` (from the repository root) prints the problems and exits
non-zero on any.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

BOOTSTRAP_AGENTS = {"docker", "docker-daemon", "docker-archive", "oci", "oci-archive", "library", "localimage",
                    "oras", "shub", "scratch", "busybox", "debootstrap", "yum", "dnf", "zypper", "arch"}
SECTIONS = {"arguments", "setup", "files", "post", "environment", "runscript", "startscript", "test", "labels",
            "help", "app", "apprun", "appinstall", "appenv", "apphelp", "appfiles", "applabels", "apptest"}
SHELL_SECTIONS = ("setup", "post", "test", "runscript", "startscript", "environment")
REQUIRED = ("test", "labels")
_TEMPLATE = re.compile(r"{{\s*([A-Za-z_][A-Za-z0-9_]*)\s*}}")
_HEADER = re.compile(r"^([A-Za-z]+):\s*(.*)$")


@dataclass
class DefFile:
    header: dict[str, str] = field(default_factory=dict)
    sections: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def parse(text: str) -> DefFile:
    parsed = DefFile()
    current: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if line.startswith("%"):
            name = line[1:].split()[0] if line[1:].split() else ""
            if name not in SECTIONS:
                parsed.problems.append(f"line {number}: unknown section %{name}")
            key = line[1:].strip()  # app sections carry the app name
            if key in parsed.sections:
                parsed.problems.append(f"line {number}: section %{key} appears twice")
            parsed.sections[key] = ""
            current = key
        elif current is not None:
            parsed.sections[current] += raw + "\n"
        elif line.strip() and not line.lstrip().startswith("#"):
            match = _HEADER.match(line.strip())
            if not match:
                parsed.problems.append(f"line {number}: not a header keyword: {line.strip()!r}")
                continue
            parsed.header[match.group(1).lower()] = match.group(2).strip()
    return parsed


def _arguments(parsed: DefFile) -> dict[str, str]:
    defaults = {}
    for line in parsed.sections.get("arguments", "").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            defaults[name.strip()] = value.strip() if sep else ""
    return defaults


def lint(path: Path, build_dir: Path) -> list[str]:
    """Problems in one definition file ([] when it parses cleanly)."""
    text = Path(path).read_text(encoding="utf-8")
    parsed = parse(text)
    problems = list(parsed.problems)
    agent = parsed.header.get("bootstrap")
    if agent is None:
        problems.append("no Bootstrap header")
    elif agent not in BOOTSTRAP_AGENTS:
        problems.append(f"unknown Bootstrap agent {agent!r}")
    if agent in {"docker", "oras", "library", "localimage", "oci", "oci-archive", "docker-daemon", "docker-archive"} \
            and not parsed.header.get("from"):
        problems.append(f"Bootstrap {agent} needs a From header")
    for section in REQUIRED:
        if section not in parsed.sections:
            problems.append(f"no %{section} section")
    defaults = _arguments(parsed)
    for name in sorted(set(_TEMPLATE.findall(text)) - set(defaults)):
        problems.append(f"{{{{ {name} }}}} is used but %arguments gives it no default")
    for line in parsed.sections.get("files", "").splitlines():
        parts = line.split()
        if parts and not parts[0].startswith("#") and not (build_dir / parts[0]).exists():
            problems.append(f"%files source {parts[0]} does not exist under {build_dir}")
    for section in SHELL_SECTIONS:
        body = parsed.sections.get(section)
        if not body:
            continue
        script = _TEMPLATE.sub(lambda m: defaults.get(m.group(1), "x"), body)
        result = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
        if result.returncode != 0:
            problems.append(f"%{section}: bash -n: {result.stderr.strip()}")
    return problems


def main(argv: list[str]) -> int:
    build_dir = Path.cwd()
    failed = False
    for name in argv:
        for problem in lint(Path(name), build_dir):
            failed = True
            print(f"{name}: {problem}")
    if not failed:
        print(f"{len(argv)} definition file(s) parse cleanly")
    return 1 if failed or not argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
