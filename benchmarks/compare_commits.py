"""The app at this checkout against the app at another commit, in one run, at 8 clients.

    .venv/bin/python benchmarks/compare_commits.py --rev HEAD~1 [--rounds 3 --seconds 8]

Both servers (`python -m app`, the other commit from a temporary `git worktree` of this
repository) run on loopback at once; each load level drives one of them while the other
idles, alternating round by round, so that whatever else the machine does weighs on both
alike. Prints each round's requests/s and the median ratio for each kind of upload of
benchmarks/load.py. A benchmark, not a test: it asserts nothing; traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.load import REPO, Server, drive, inputs  # noqa: E402
from benchmarks.memory_tree import free_port  # noqa: E402


def _server(checkout: Path) -> Server:
    port = free_port()
    env = {"PNEUMONIA_PORT": str(port), "PNEUMONIA_HOST": "127.0.0.1",
           "PNEUMONIA_MODEL_DIR": str(checkout / "models"),
           "PNEUMONIA_TEMPLATES_DIR": str(checkout / "templates"),
           "PNEUMONIA_STATIC_DIR": str(checkout / "static"), "PYTHONPATH": str(checkout),
           "PNEUMONIA_DICOM_PORT": "0"}  # two servers at once: no DICOM listener
    return Server([sys.executable, "-m", "app"], env, port, cwd=checkout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rev", default="HEAD~1", help="the commit to compare with")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="per round and server")
    args = parser.parse_args()
    sets = inputs(args.data_dir)
    rev = subprocess.run(["git", "rev-parse", "--short", args.rev], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(other), rev],
                       cwd=REPO, check=True)
        servers = {}
        try:
            servers = {f"this ({head}+work tree)": _server(REPO), f"{rev}": _server(other)}
            print(f"{args.clients} clients, {args.rounds} rounds of {args.seconds:g} s per "
                  "server, alternating", flush=True)
            ratios = {}
            for set_name, uploads in sets.items():
                rps: dict[str, list[float]] = {name: [] for name in servers}
                for _ in range(args.rounds):
                    for name, server in servers.items():
                        result = drive(server.port, uploads, args.clients, args.seconds)
                        rps[name].append(result["rps"])
                        if result["failed"]:
                            print(f"  {name}: {result['statuses']}", flush=True)
                this, that = (statistics.median(v) for v in rps.values())
                ratios[set_name] = this / that
                print(f"  {set_name:<38} " + "  ".join(
                    f"{name}: {' '.join(f'{v:.1f}' for v in values)} req/s"
                    for name, values in rps.items()) + f"  -> ratio {this / that:.3f}",
                    flush=True)
        finally:
            for server in servers.values():
                server.stop()
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=REPO)
    print("\n| upload | this / " + rev + " (median req/s) |\n|---|---:|")
    for set_name, ratio in ratios.items():
        print(f"| {set_name} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
