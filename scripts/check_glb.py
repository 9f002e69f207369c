#!/usr/bin/env python3
"""Check that voxmesh's ``.glb`` files open where people open them.

    python scripts/check_glb.py FILE.glb [FILE.glb ...] [--npy MOTION.npy ...] [--render DIR]
                                [--json OUT.json] [--install] [--no-blender]

1. the Khronos glTF validator (npm ``gltf-validator``) must report no errors;
2. three.js (npm ``three``, GLTFLoader) must load the file in headless Chromium (driven by
   ``puppeteer-core``) and find morph targets or animation channels; the animation is
   played through an AnimationMixer and one frame drawn with WebGL, for the record;
3. Blender's glTF importer (headless ``blender -b``, scripts/glb_check/blender_check.py)
   must import it and play it as the file says: at every checked frame the face Blender
   evaluates (shape keys at their animated values) is within 0.1 mm of base + weights @
   targets, and of the motion in ``--npy`` (float ``[T, V, 3]``, one per file, in order)
   when given; ``--render DIR`` draws the frame farthest from the base mesh (the widest
   mouth, usually) to DIR/<name>_blender.png with Cycles. Blender comes from Debian
   (``apt-get install --no-install-recommends blender python3-numpy``: about 675 MB;
   ``--install`` runs it as root); ``--no-blender`` leaves this step out.

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
# How far (metres, per vertex) the face Blender plays may be from the file's or the .npy's.
BLENDER_TOLERANCE_M = 1e-4
# Debian's blender package does not pull numpy, which its glTF importer imports.
BLENDER_PACKAGES = ["blender", "python3-numpy"]


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


def apt_install(packages: list[str], extra: list[str], what: str) -> None:
    """``apt-get update`` and ``apt-get install -y`` (as root), or a SetupError."""
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise SetupError(f"--install runs `apt-get install {' '.join(packages)}`, which needs root: run that as "
                         "root instead.")
    print(f"installing {what} with apt-get ...", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", *extra, *packages]):
        if subprocess.run(command, env=env, check=False).returncode != 0:
            raise SetupError(f"`{' '.join(command)}` failed; install {what} by hand and rerun.")


def find_chromium(path: str | None, install: bool) -> str:
    chromium = path or os.environ.get("CHROMIUM") or DEFAULT_CHROMIUM
    if os.path.isfile(chromium) and os.access(chromium, os.X_OK):
        return chromium
    if path or os.environ.get("CHROMIUM") or not install:
        raise SetupError(f"Chromium is missing at {chromium}: install it with `apt-get install chromium` "
                         "(as root), or rerun with --install.")
    apt_install(["chromium"], [], "Chromium")
    if not os.path.isfile(DEFAULT_CHROMIUM):
        raise SetupError(f"`apt-get install chromium` did not create {DEFAULT_CHROMIUM}; pass --chromium PATH.")
    return DEFAULT_CHROMIUM


def blender_command(blender: str, *python: str) -> list[str]:
    """Blender in the background with its factory settings; a failing script fails it."""
    return [blender, "-b", "--factory-startup", "-noaudio", "--python-exit-code", "1", *python]


def find_blender(path: str | None, install: bool) -> str:
    """Blender whose Python can import numpy (its glTF importer needs it); ``install``
    (as root) runs ``apt-get install --no-install-recommends blender python3-numpy``."""
    wanted = path or os.environ.get("BLENDER") or "blender"
    blender = shutil.which(wanted)
    if blender is None:
        if path or os.environ.get("BLENDER") or not install:
            raise SetupError(f"Blender is missing ({wanted}): install it with `apt-get install "
                             f"--no-install-recommends {' '.join(BLENDER_PACKAGES)}` (as root), rerun with "
                             "--install, or pass --no-blender.")
        apt_install(BLENDER_PACKAGES, ["--no-install-recommends"], "Blender")
        blender = shutil.which("blender")
        if blender is None:
            raise SetupError("`apt-get install blender` left no `blender` on PATH; pass --blender PATH.")
    probe = subprocess.run(blender_command(blender, "--python-expr", "import numpy, io_scene_gltf2"),
                           capture_output=True, text=True, timeout=120, check=False)
    if probe.returncode != 0:
        if "numpy" in probe.stdout + probe.stderr and install and shutil.which("apt-get"):
            apt_install(["python3-numpy"], ["--no-install-recommends"], "numpy for Blender's Python")
            return find_blender(blender, install=False)
        raise SetupError(f"{blender} cannot import numpy and its glTF add-on (exit {probe.returncode}); "
                         "install numpy for its Python (`apt-get install python3-numpy` on Debian).")
    return blender


def run_helper(node: str, script: str, args: list[str], timeout: float) -> dict:
    """Run one helper under scripts/glb_check/ and parse the JSON line it prints."""
    return run_json([node, str(HELPERS / script), *args], script, timeout)


def run_json(command: list[str], script: str, timeout: float) -> dict:
    """Run a helper's command and parse the last JSON line it prints on stdout."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{script} took more than {timeout:g} s") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-5:]
        raise RuntimeError(f"{script} exited {done.returncode}: " + " | ".join(tail))
    return json.loads(lines[-1])


def check_blender(path: Path, blender: str, npy: Path | None = None, render: Path | None = None,
                  frames: int = 0, timeout: float = 300.0, size: int = 384) -> tuple[dict | None, list[str], list[str]]:
    """Import ``path`` with Blender's glTF importer and play it: the helper's report, the
    problems (the check fails) and notes. ``frames``: how many frames to compare, spread
    evenly (0: all); ``render``: where to write one Cycles render."""
    args = [str(path), "--frames", str(frames), "--size", str(size)]
    if npy is not None:
        args += ["--npy", str(npy)]
    if render is not None:
        args += ["--render", str(render)]
    command = blender_command(blender, "--python", str(HELPERS / "blender_check.py"), "--", *args)
    try:
        result = run_json(command, "blender_check.py", timeout)
    except RuntimeError as err:
        return None, [f"the Blender check did not run: {err}"], []
    notes = list(result.get("notes") or [])
    if not result.get("ok"):
        return result, [f"Blender's glTF import failed: {result.get('error', '?')}"], notes
    problems = []
    limit_mm = BLENDER_TOLERANCE_M * 1000
    if result.get("frames_checked") and result["max_error_vs_file_m"] > BLENDER_TOLERANCE_M:
        problems.append(f"Blender plays the face up to {result['max_error_vs_file_m'] * 1000:.3f} mm from what the "
                        f"file says (over {limit_mm:g} mm; weights outside its sliders' [0, 1]?)")
    if npy is not None and result.get("max_error_vs_npy_m", 0.0) > BLENDER_TOLERANCE_M:
        problems.append(f"Blender plays the face up to {result['max_error_vs_npy_m'] * 1000:.3f} mm from {npy.name} "
                        f"(over {limit_mm:g} mm), worst at frame {result.get('worst_frame')}")
    low, high = result.get("key_values") or (0.0, 0.0)
    if low < 0.0 or high > 1.0:
        notes.append(f"shape-key values in Blender span [{low:.3f}, {high:.3f}]: outside [0, 1], which other "
                     "importers clamp")
    if render is not None and not (result.get("render") or {}).get("ok"):
        problems.append("Blender did not render the file")
    return result, problems, notes


def check_file(path: Path, node: str, root: Path, chromium: str, timeout: float, max_messages: int,
               blender: str | None = None, npy: Path | None = None, render_dir: Path | None = None,
               blender_frames: int = 0) -> dict:
    """Validate and load one file; ``problems`` lists why it fails (empty: it passes).
    ``blender``: also import it into Blender (:func:`check_blender`)."""
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
    if blender is not None:
        render = render_dir / f"{path.stem}_blender.png" if render_dir is not None else None
        report["blender"], blender_problems, blender_notes = check_blender(
            path, blender, npy, render, blender_frames, timeout=max(timeout, 60.0) * 3)
        problems.extend(blender_problems)
        notes.extend(blender_notes)
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
        b = r.get("blender") or {}
        blender_error = b.get("max_error_vs_npy_m", b.get("max_error_vs_file_m"))
        return [
            Path(r["file"]).name, f"{r['bytes'] / 1e6:.2f} MB",
            _fmt(v.get("numErrors")), _fmt(v.get("numWarnings")), _fmt(v.get("numInfos")), _fmt(v.get("numHints")),
            _fmt(t.get("meshes")), _fmt(t.get("vertices")), _fmt(t.get("triangles")), _fmt(t.get("morphTargets")),
            _fmt(t.get("animations")), _fmt(t.get("channels")), _fmt(t.get("keyframes")), _fmt(t.get("duration")),
            _fmt(t.get("maxInfluenceChange")), drawn,
            ("-" if not b else "OK" if b.get("ok") else "failed"), _fmt(b.get("frames_checked")),
            _fmt(blender_error * 1000 if blender_error is not None else None, 4),
            ("vs .npy" if "max_error_vs_npy_m" in b else "vs file" if blender_error is not None else "-"),
            (f"frame {b['render']['frame']}" if (b.get("render") or {}).get("ok") else "-"),
            "OK" if r["ok"] else "FAIL",
        ]

    labels = ["file", "size", "validator errors", "validator warnings", "validator infos", "validator hints",
              "three.js meshes", "vertices", "triangles", "morph targets", "animations", "channels",
              "keyframes", "duration (s)", "max influence change", "WebGL first frame",
              "Blender import", "Blender frames checked", "Blender max error (mm)", "Blender compared",
              "Blender render", "result"]
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
    versions["blender"] = next(((r.get("blender") or {}).get("blender") for r in reports
                                if (r.get("blender") or {}).get("blender")), None)
    return versions


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("files", nargs="+", metavar="FILE.glb", help="binary glTF files to check")
    parser.add_argument("--json", metavar="OUT.json", help="also write the full report as JSON")
    parser.add_argument("--npy", action="append", metavar="MOTION.npy",
                        help="the motion a file was made from, float [T, V, 3]; once per file, in order: "
                             "Blender's playback must be within 0.1 mm of it")
    parser.add_argument("--render", metavar="DIR",
                        help="write DIR/<name>_blender.png: Blender's render of the frame farthest from the base mesh")
    parser.add_argument("--blender", metavar="PATH", help="Blender binary (default: $BLENDER or blender on PATH)")
    parser.add_argument("--no-blender", action="store_true", help="leave out the Blender import check")
    parser.add_argument("--blender-frames", type=int, default=600,
                        help="frames Blender compares, spread evenly (0: all; default 600)")
    parser.add_argument("--install", action="store_true",
                        help="install Chromium and Blender with apt-get (as root) when they are missing")
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
    npys = [Path(n) for n in args.npy or []]
    if npys and len(npys) != len(files):
        print(f"{PROG}: error: {len(npys)} --npy for {len(files)} files: give one per file, in order",
              file=sys.stderr)
        return EXIT_USAGE
    for npy in npys:
        if not npy.is_file():
            print(f"{PROG}: error: no such file: {npy}", file=sys.stderr)
            return EXIT_USAGE
    if npys and args.no_blender:
        print(f"{PROG}: error: --npy is compared in Blender; drop --no-blender", file=sys.stderr)
        return EXIT_USAGE
    root = Path(args.cache) if args.cache else cache_root()
    try:
        node = find_node()
        ensure_packages(root, allow_install=not args.no_install)
        chromium = find_chromium(args.chromium, args.install)
        blender = None if args.no_blender else find_blender(args.blender, args.install)
    except SetupError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return EXIT_SETUP

    render_dir = Path(args.render) if args.render else None
    if render_dir is not None:
        render_dir.mkdir(parents=True, exist_ok=True)
    reports = [check_file(path, node, root, chromium, args.timeout, args.max_messages, blender,
                          npys[i] if npys else None, render_dir, args.blender_frames)
               for i, path in enumerate(files)]
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
