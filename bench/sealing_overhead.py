"""What sealing entity secrets at rest adds to a backup and a restore of the large service, measured
in process on the rows themselves (no database, no storage: the end-to-end benchmark,
bench/backup_restore.py, is too noisy on a shared machine to show a few percent).

    .venv/bin/python bench/sealing_overhead.py [--scale 0.5] [--trials 5]

backup: the rows as the backup stream hands them over (`entities._opened`: opening the sealed
ones), against the same pass over rows stored in clear (what is left of the cost without sealing).
restore: building the rows of the bulk insert with their secrets sealed (`bulk_insert`'s per-row
work), against building them without.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.large_service import rows, scaled  # noqa: E402
from portico.names import fold_name  # noqa: E402
from portico.secret_fields import SECRET_KINDS  # noqa: E402
from portico.secrets_box import SecretBox  # noqa: E402
from portico.store import entities as E  # noqa: E402
from portico.store.sealing import PREFIX_JSON, seal_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    box = SecretBox(os.urandom(32))
    clear = [
        (r["kind"], r["parent"], r["name"], r["display_name"], r["etag"], r["data"].encode())
        for r in rows(1, scaled(args.scale))
    ]
    sealed = [(k, p, n, d, e, seal_json(box, k, p, n, data)) for k, p, n, d, e, data in clear]
    print(f"{len(clear):,} rows, {sum(PREFIX_JSON in r[5] for r in sealed):,} with sealed fields")
    opened, scanned, with_seal, without = [], [], [], []
    for _ in range(args.trials):
        batch = list(sealed)
        t = time.perf_counter()
        E._opened(box, batch)
        opened.append(time.perf_counter() - t)
        batch = list(clear)
        t = time.perf_counter()
        E._opened(box, batch)
        scanned.append(time.perf_counter() - t)
        loaded = [(1, k, p, n, d, e, data.decode()) for k, p, n, d, e, data in clear]
        t = time.perf_counter()
        [
            (*r[:6], seal_json(box, r[1], r[2], r[3], r[6]), fold_name(r[3]))
            if r[1] in SECRET_KINDS
            else (*r, fold_name(r[3]))
            for r in loaded
        ]
        with_seal.append(time.perf_counter() - t)
        t = time.perf_counter()
        [(*r, fold_name(r[3])) for r in loaded]
        without.append(time.perf_counter() - t)
    ms = lambda xs: f"{statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f})"  # noqa: E731
    print(f"backup stream: secrets opened {ms(opened)}; rows in clear {ms(scanned)}")
    print(f"restore rows:  secrets sealed {ms(with_seal)}; without sealing {ms(without)}")


if __name__ == "__main__":
    main()
