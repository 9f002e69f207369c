#!/usr/bin/env python3
"""Check that voxmesh's ``.glb`` files open where people open them.

    python scripts/check_glb.py FILE.glb [FILE.glb ...] [--json OUT.json] [--install]

1. the Khronos glTF validator (npm ``gltf-validator``) must report no errors;
2. three.js (npm ``three``, GLTFLoader) must load the file in headless Chromium (driven by
   ``puppeteer-core``) and find morph targets or animation channels; the animation is
   played through an AnimationMixer and one frame drawn with WebGL, for the record.

The pinned npm packages (scripts/glb_check/package.json) are installed on first use into
``$VOXMESH_CACHE/glb-check`` (default ``~/.cache/voxmesh/glb-check``); Chromium is the
system one (``/usr/bin/chromium``, installed by ``--install`` as root). Nothing else is
downloaded: puppeteer-core brings no browser.

Exit status: 0 all files pass, 1 a check failed, 2 bad arguments, 3 a tool is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HELPERS = Path(__file__).resolve().parent / "glb_check"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
MIN_NODE = 18
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SETUP = 0, 1, 2, 3
PROG = "check_glb.py"


class SetupError(Exception):
    """A tool the check needs is missing; the message says how to get it."""


def cache_root() -> Path:
    """Where the npm packages go: ``$VOXMESH_CACHE/glb-check`` (as voxmesh.files.cache_dir)."""
    return Path(os.environ.get("VOXMESH_CACHE", Path.home() / ".cache" / "voxmesh")) / "glb-check"


def pinned_packages() -> dict[str, str]:
    return json.loads((HELPERS / "package.json").read_text())["dependencies"]


def installed_versions(root: Path) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in pinned_packages():
        manifest = root / "node_modules" / name / "package.json"
        try:
            versions[name] = json.loads(manifest.read_text())["version"]
        except (OSError, ValueError, KeyError):
            versions[name] = None
    return versions


def packages_ready(root: Path) -> bool:
    return installed_versions(root) == pinned_packages()


def find_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise SetupError(f"Node.js is missing: install Node.js {MIN_NODE} or newer (apt-get install nodejs npm).")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        major = 0
    if major < MIN_NODE:
        raise SetupError(f"Node.js {version or '(unknown)'} is too old: the check needs Node.js {MIN_NODE} or newer.")
    return node


def ensure_packages(root: Path, allow_install: bool) -> None:
    """Install the pinned npm packages into ``root`` unless they are there already."""
    if packages_ready(root):
        return
    if not allow_install:
        raise SetupError(f"The pinned npm packages are not installed in {root}: run without --no-install "
                         "(it needs the npm registry) to install them.")
    npm = shutil.which("npm")
    if npm is None:
        raise SetupError("npm is missing: install it with `apt-get install npm` (it comes with Node.js).")
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HELPERS / "package.json", root / "package.json")
    print(f"installing {', '.join(f'{k}@{v}' for k, v in pinned_packages().items())} into {root} ...",
          file=sys.stderr, flush=True)
    env = {**os.environ, "PUPPETEER_SKIP_DOWNLOAD": "1"}  # puppeteer-core downloads nothing; belt and braces
    done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                          cwd=root, env=env, check=False)
    if done.returncode != 0 or not packages_ready(root):
        raise SetupError(f"`npm install` in {root} failed (exit {done.returncode}); is the npm registry reachable?")


def find_chromium(path: str | None, install: bool) -> str:
    chromium = path or os.environ.get("CHROMIUM") or DEFAULT_CHROMIUM
    if os.path.isfile(chromium) and os.access(chromium, os.X_OK):
        return chromium
    if path or os.environ.get("CHROMIUM") or not install:
        raise SetupError(f"Chromium is missing at {chromium}: install it with `apt-get install chromium` "
                         "(as root), or rerun with --install.")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise SetupError("--install runs `apt-get install chromium`, which needs root: run that as root instead.")
    print("installing chromium with apt-get ...", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        if subprocess.run(command, env=env, check=False).returncode != 0:
            raise SetupError(f"`{' '.join(command)}` failed; install Chromium by hand and rerun.")
    if not os.path.isfile(DEFAULT_CHROMIUM):
        raise SetupError(f"`apt-get install chromium` did not create {DEFAULT_CHROMIUM}; pass --chromium PATH.")
    return DEFAULT_CHROMIUM


def run_helper(node: str, script: str, args: list[str], timeout: float) -> dict:
    """Run one helper under scripts/glb_check/ and parse the JSON line it prints."""
    try:
        done = subprocess.run([node, str(HELPERS / script), *args], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{script} took more than {timeout:g} s") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-5:]
        raise RuntimeError(f"{script} exited {done.returncode}: " + " | ".join(tail))
    return json.loads(lines[-1])


def check_file(path: Path, node: str, root: Path, chromium: str, timeout: float, max_messages: int) -> dict:
    """Validate and load one file; ``problems`` lists why it fails (empty: it passes)."""
    report: dict = {"file": str(path), "bytes": path.stat().st_size, "problems": [], "notes": []}
    problems, notes = report["problems"], report["notes"]
    try:
        validator = run_helper(node, "validate.cjs", [str(root), str(path), str(max_messages)], timeout)
        report["validator"] = validator
        if validator["numErrors"]:
            problems.append(f"the glTF validator reports {validator['numErrors']} error(s)")
    except RuntimeError as err:
        report["validator"] = None
        problems.append(f"the glTF validator did not run: {err}")
    try:
        loaded = run_helper(node, "load.cjs", [str(root), str(path), chromium, str(timeout)], timeout + 30)
        report["browser"] = loaded.get("browser")
        report["console"] = loaded.get("console", [])
        if not loaded.get("ok"):
            report["three"] = None
            problems.append(f"three.js failed to load it: {loaded.get('error', '?').splitlines()[0]}")
        else:
            three = report["three"] = loaded["result"]
            if not three["morphTargets"] and not three["channels"]:
                problems.append("three.js finds neither morph targets nor animation channels")
            if three["channels"] and three["maxInfluenceChange"] == 0:
                notes.append("playing the animation leaves every morph influence unchanged (a still face?)")
            render = three.get("render") or {}
            if not render.get("ok"):
                notes.append(f"no WebGL render: {render.get('error')}")
            elif not render.get("coveredPixels"):
                notes.append("the WebGL render of the first frame is empty")
    except RuntimeError as err:
        report["three"] = None
        problems.append(f"the three.js check did not run: {err}")
    report["ok"] = not problems
    return report


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(reports: list[dict]) -> str:
    """One column per file, one row per figure."""
    def row(r: dict) -> list[str]:
        v = r.get("validator") or {}
        t = r.get("three") or {}
        render = t.get("render") or {}
        drawn = (f"{render['coveredPixels']}/{render['size'] ** 2} px" if render.get("ok") else "-")
        return [
            Path(r["file"]).name, f"{r['bytes'] / 1e6:.2f} MB",
            _fmt(v.get("numErrors")), _fmt(v.get("numWarnings")), _fmt(v.get("numInfos")), _fmt(v.get("numHints")),
            _fmt(t.get("meshes")), _fmt(t.get("vertices")), _fmt(t.get("triangles")), _fmt(t.get("morphTargets")),
            _fmt(t.get("animations")), _fmt(t.get("channels")), _fmt(t.get("keyframes")), _fmt(t.get("duration")),
            _fmt(t.get("maxInfluenceChange")), drawn, "OK" if r["ok"] else "FAIL",
        ]

    labels = ["file", "size", "validator errors", "validator warnings", "validator infos", "validator hints",
              "three.js meshes", "vertices", "triangles", "morph targets", "animations", "channels",
              "keyframes", "duration (s)", "max influence change", "WebGL first frame", "result"]
    columns = [row(r) for r in reports]
    widths = [max(len(value) for value in column) for column in columns]
    label_width = max(map(len, labels))
    lines = []
    for i, label in enumerate(labels):
        cells = "  ".join(column[i].rjust(width) for column, width in zip(columns, widths))
        lines.append(f"{label.ljust(label_width)}  {cells}")
    for r in reports:
        name = Path(r["file"]).name
        for m in (r.get("validator") or {}).get("messages", []):
            lines.append(f"{name}: validator {m['severity']} {m['code']} at {m.get('pointer') or '-'}: {m['message']}")
        lines.extend(f"{name}: note: {n}" for n in r["notes"])
        lines.extend(f"{name}: FAIL: {p}" for p in r["problems"])
    return "\n".join(lines)


def tool_versions(node: str, root: Path, reports: list[dict]) -> dict:
    versions = {"node": subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()}
    versions.update({f"npm:{k}": v for k, v in installed_versions(root).items()})
    versions["chromium"] = next((r.get("browser") for r in reports if r.get("browser")), None)
    return versions


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("files", nargs="+", metavar="FILE.glb", help="binary glTF files to check")
    parser.add_argument("--json", metavar="OUT.json", help="also write the full report as JSON")
    parser.add_argument("--install", action="store_true",
                        help="install Chromium with apt-get (as root) when /usr/bin/chromium is missing")
    parser.add_argument("--no-install", action="store_true",
                        help="never run npm install: fail (exit 3) when the packages are not in the cache")
    parser.add_argument("--cache", metavar="DIR",
                        help="folder for the npm packages (default: $VOXMESH_CACHE/glb-check)")
    parser.add_argument("--chromium", metavar="PATH",
                        help=f"Chromium binary (default: $CHROMIUM or {DEFAULT_CHROMIUM})")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed for each step (default 120)")
    parser.add_argument("--max-messages", type=int, default=10, help="validator messages kept per file (default 10)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    files = [Path(f) for f in args.files]
    for path in files:
        if not path.is_file():
            print(f"{PROG}: error: no such file: {path}", file=sys.stderr)
            return EXIT_USAGE
        with path.open("rb") as stream:
            if stream.read(4) != b"glTF":
                print(f"{PROG}: error: not a binary glTF (.glb) file: {path}", file=sys.stderr)
                return EXIT_USAGE
    root = Path(args.cache) if args.cache else cache_root()
    try:
        node = find_node()
        ensure_packages(root, allow_install=not args.no_install)
        chromium = find_chromium(args.chromium, args.install)
    except SetupError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return EXIT_SETUP

    reports = [check_file(path, node, root, chromium, args.timeout, args.max_messages) for path in files]
    print(table(reports))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"tools": tool_versions(node, root, reports), "results": reports}
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(tmp, out)
        print(f"wrote {out}")
    return EXIT_OK if all(r["ok"] for r in reports) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
