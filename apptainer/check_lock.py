"""Fail unless every ``name==version`` line of the given lock files is what is installed (image %test)."""

from __future__ import annotations

import re
import sys
from importlib import metadata

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(paths: list[str]) -> int:
    installed = {normalize(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = []
    checked = 0
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
        for line in lines:
            match = PIN.match(line.strip())
            if not match:
                continue
            name, version = normalize(match.group(1)), match.group(3)
            checked += 1
            found = installed.get(name)
            if found is not None and "+" not in version:
                found = found.split("+", 1)[0]  # torch 2.13.0+cpu / +cu128 satisfies a lock of 2.13.0
            if found != version:
                wrong.append(f"{name}: locked {version}, installed {installed.get(name, 'nothing')}")
    for problem in wrong:
        print(problem, file=sys.stderr)
    print(f"{checked - len(wrong)} of {checked} locked packages installed at their locked version")
    return 1 if wrong or not checked else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
