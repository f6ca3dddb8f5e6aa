#!/usr/bin/env python3
"""Lists the crates built into the app for one target, each with its licence, from
`cargo metadata` (read on stdin): the packages reached from cnn-explorer through normal
(not dev or build) dependencies. Writes THIRD-PARTY.txt's text to stdout.

  cargo metadata --format-version 1 --filter-platform TARGET | third_party.py TARGET
"""

import json
import sys


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else "?"
    meta = json.load(sys.stdin)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = meta["resolve"]["root"]
    seen, todo = set(), [root]
    while todo:
        node = nodes[todo.pop()]
        for dep in node["deps"]:
            normal = any(k["kind"] is None for k in dep["dep_kinds"])
            if normal and dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                todo.append(dep["pkg"])
    rows = sorted(
        (packages[i]["name"], packages[i]["version"], packages[i].get("license") or "see its files")
        for i in seen
    )
    print(f"Libraries built into cnn-explorer for {target} ({len(rows)} crates from crates.io)")
    print("Each crate's licence text is in its source package on crates.io.")
    print()
    print("The window's fonts come with egui (egui's default_fonts): Ubuntu-Light (Ubuntu Font")
    print("Licence 1.0), Hack (MIT), Noto Emoji (SIL Open Font Licence 1.1) and emoji-icon-font")
    print("(MIT/OFL-1.1).")
    print()
    width = max(len(f"{n} {v}") for n, v, _ in rows)
    for name, version, licence in rows:
        print(f"{name + ' ' + version:<{width}}  {licence}")


if __name__ == "__main__":
    main()
