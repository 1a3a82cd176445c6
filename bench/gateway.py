"""Gateway benchmark: Portico's gateway against nginx, proxying the same backend, in one run.

    python bench/gateway.py [--duration 5] [--rounds 4] [--connections 32] [--no-write]

What runs (all on loopback, bounded in time):
- backend: nginx (one worker) answering a small static JSON document - fast enough not to be
  the bottleneck;
- nginx reverse proxy (`--workers` worker processes, keep-alive upstream) in front of it;
- two Python references on the gateway's stack (uvloop + httptools): the least any proxy does
  (bench/floor_proxy.py) and that plus the work Portico cannot skip on this request
  (bench/lean_proxy.py);
- Portico (`portico serve` with `--workers` gateway worker processes beside the management
  process) in front of it, with a subscription-key check, a rate-limit policy (high limit: it
  counts, never refuses) and analytics on (every request is written to the usage table);
- wrk: saturating runs for peak requests/s, in `--rounds` interleaved rounds (backend, nginx,
  floor, lean, Portico, again and again: this machine's speed drifts within minutes, so ratios are
  taken within a round and their median reported), then runs paced at half of Portico's peak
  (wrk's per-connection `delay()`), from which the added latency (p50/p99 minus the direct
  backend's at the same rate) is computed.
Results are printed and written to docs/benchmarks.md under "## Gateway".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
SUB = "00000000-0000-0000-0000-000000000001"
RG = "bench"
SERVICE = "bench"
DOMAIN = "gateway.localhost"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_tools() -> None:
    missing = [
        p
        for p, b in (("wrk", "wrk"), ("nginx", "nginx"))
        if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()
    ]
    if missing:
        print(f"installing {' '.join(missing)} (Debian packages)", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL
        )


def nginx_bin() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def start_nginx(root: Path, name: str, body: str, workers: int = 1) -> subprocess.Popen[bytes]:
    conf = root / f"{name}.conf"
    conf.write_text(
        f"""worker_processes {workers};
daemon off;
pid {root}/{name}.pid;
error_log {root}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  {body}
}}
"""
    )
    proc = subprocess.Popen(
        [nginx_bin(), "-c", str(conf), "-p", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(0.3)
    if proc.poll() is not None:
        raise SystemExit(f"nginx {name} failed to start: {(root / f'{name}.error.log').read_text()[-2000:]}")
    return proc


def wait_http(
    url: str, headers: dict[str, str] | None = None, timeout: float = 30, expect: int = 200
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == expect:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer {expect} in {timeout}s")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(
    url: str, *, duration: int, connections: int, headers: dict[str, str], delay_ms: float | None = None
) -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    script = None
    if delay_ms is not None:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write(f"function delay()\n  return {delay_ms:.3f}\nend\n")
        script.close()
        cmd += ["-s", script.name]
    out = subprocess.run(
        [*cmd, url], check=True, capture_output=True, text=True, timeout=duration + 30
    ).stdout
    if script is not None:
        os.unlink(script.name)
    res: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    res["requests"] = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if m:
            res[f"p{pct}"] = float(m.group(1)) * _UNITS[m.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["errors"] = float(non2xx.group(1)) if non2xx else 0.0
    sock_err = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock_err:
        res["errors"] += sum(float(x) for x in sock_err.groups())
    return res


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """utime + stime of `pid` itself, and of its children (gateway or proxy worker processes)."""
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    ticks = [0, 0]
    for i, p in enumerate(pids):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks[min(i, 1)] += int(fields[11]) + int(fields[12])
    hz = os.sysconf("SC_CLK_TCK")
    return ticks[0] / hz, ticks[1] / hz


def combined(runs: list[dict[str, float]]) -> dict[str, float]:
    """Rounds of one target: medians of rates and latencies, sums of requests and errors, CPU per
    request over all of them."""
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k not in ("requests", "errors")}
    out["requests"] = sum(r["requests"] for r in runs)
    out["errors"] = sum(r["errors"] for r in runs)
    for k in ("cpu_us", "parent_us", "workers_us"):
        if k in runs[0]:
            out[k] = sum(r[k] * r["requests"] for r in runs) / max(1.0, out["requests"])
    return out


def measured_cpu(pid: int, run: Any) -> dict[str, float]:
    """`run()`'s wrk result plus the CPU the proxy spent per request: in all (`cpu_us`), in its
    worker processes (`workers_us`) and in the parent (`parent_us`: for Portico, the usage ingest)."""
    own0, kids0 = _cpu_seconds(pid)
    res: dict[str, float] = run()
    own1, kids1 = _cpu_seconds(pid)
    n = max(1.0, res["requests"])
    res["parent_us"] = (own1 - own0) / n * 1e6
    res["workers_us"] = (kids1 - kids0) / n * 1e6
    res["cpu_us"] = res["parent_us"] + res["workers_us"]
    return res


class Portico:
    def __init__(self, root: Path, backend_port: int, workers: int) -> None:
        self.root = root
        self.workers = workers
        self.port = free_port()
        self.gw_port = free_port()
        self.backend_port = backend_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = open(root / "portico.log", "wb")

    def start(self) -> None:
        env = {
            **os.environ,
            "PORTICO_DATA_DIR": str(self.root / "data"),
            "PORTICO_PORT": str(self.port),
            "PORTICO_GATEWAY_PORT": str(self.gw_port),
            "PORTICO_GATEWAY_HTTPS_PORT": "0",
            "PORTICO_GATEWAY_WORKERS": str(self.workers),
            "PORTICO_LOG_LEVEL": "warning",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "portico.cli", "serve"],
            env=env,
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        ca = self.root / "data" / "tls" / "ca.pem"
        deadline = time.monotonic() + 60
        while not ca.exists() or not (self.root / "data" / "admin-credentials.json").exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"Portico did not start: {(self.root / 'portico.log').read_text()[-3000:]}")
            time.sleep(0.1)
        self.verify = ssl.create_default_context(cafile=str(ca))
        self.url = f"https://localhost:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(
                    f"{self.url}/portico/v2.0/.well-known/openid-configuration", verify=self.verify, timeout=2
                ).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        creds = json.loads((self.root / "data" / "admin-credentials.json").read_text())
        token = httpx.post(
            f"{self.url}/portico/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": creds["client_id"],
                "client_secret": creds["client_secret"],
                "scope": "https://management.azure.com/.default",
            },
            verify=self.verify,
        ).json()["access_token"]
        self.http = httpx.Client(
            base_url=self.url, verify=self.verify, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def put(self, path: str, body: dict[str, Any], api_version: str = "2024-05-01") -> httpx.Response:
        r = self.http.put(path, params={"api-version": api_version}, json=body)
        if r.status_code >= 400:
            raise SystemExit(f"PUT {path}: {r.status_code} {r.text[:500]}")
        return r

    def configure(self) -> str:
        svc = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ApiManagement/service/{SERVICE}"
        self.put(f"/subscriptions/{SUB}/resourcegroups/{RG}", {"location": "westeurope"}, "2021-04-01")
        self.put(
            svc,
            {
                "location": "westeurope",
                "sku": {"name": "Developer", "capacity": 1},
                "properties": {"publisherEmail": "ops@contoso.com", "publisherName": "Contoso"},
            },
        )
        self.put(
            f"{svc}/apis/bench",
            {
                "properties": {
                    "path": "bench",
                    "displayName": "Bench",
                    "protocols": ["http", "https"],
                    "serviceUrl": f"http://127.0.0.1:{self.backend_port}",
                }
            },
        )
        self.put(
            f"{svc}/apis/bench/operations/get",
            {"properties": {"displayName": "get", "method": "GET", "urlTemplate": "/*"}},
        )
        self.put(
            f"{svc}/apis/bench/policies/policy",
            {
                "properties": {
                    "format": "xml",
                    "value": (
                        '<policies><inbound><base /><rate-limit calls="100000000" renewal-period="60" /></inbound>'
                        "<backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"
                    ),
                }
            },
        )
        self.put(
            f"{svc}/subscriptions/bench",
            {"properties": {"scope": "/apis", "displayName": "bench", "state": "active"}},
        )
        keys = self.http.post(
            f"{svc}/subscriptions/bench/listSecrets", params={"api-version": "2024-05-01"}
        ).json()
        return str(keys["primaryKey"])

    def usage_total(self) -> int:
        svc = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ApiManagement/service/{SERVICE}"
        r = self.http.get(
            f"{svc}/reports/byApi",
            params={"api-version": "2024-05-01", "$filter": "timestamp ge datetime'2000-01-01T00:00:00'"},
        )
        return sum(int(x["callCountTotal"]) for x in r.json()["value"])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def write_results(text: str) -> None:
    path = REPO / "docs" / "benchmarks.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    section = "## Gateway\n\n" + text.strip() + "\n"
    pattern = re.compile(r"^## Gateway\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(current):
        current = pattern.sub(section + "\n", current).rstrip() + "\n"
    else:
        current = current.rstrip() + "\n\n" + section
    path.write_text(current)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds of the peak runs")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="gateway worker processes of Portico, and worker processes of the nginx proxy",
    )
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()
    ensure_tools()
    root = Path(tempfile.mkdtemp(prefix="portico-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    portico: Portico | None = None
    try:
        backend_port, nginx_port, floor_port = free_port(), free_port(), free_port()
        procs.append(
            start_nginx(
                root,
                "backend",
                f"server {{ listen 127.0.0.1:{backend_port}; keepalive_requests 1000000; "
                f"location / {{ default_type application/json; return 200 '{{\"ok\":true}}'; }} }}",
            )
        )
        procs.append(
            start_nginx(
                root,
                "proxy",
                f"upstream be {{ server 127.0.0.1:{backend_port}; keepalive 128; keepalive_requests 1000000; }} "
                f"server {{ listen 127.0.0.1:{nginx_port}; keepalive_requests 1000000; location / {{ proxy_pass http://be; "
                'proxy_http_version 1.1; proxy_set_header Connection ""; } }',
                workers=args.workers,
            )
        )
        floor_proc = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench" / "floor_proxy.py"),
                str(floor_port),
                str(backend_port),
                "--workers",
                str(args.workers),
            ]
        )
        procs.append(floor_proc)
        portico = Portico(root, backend_port, args.workers)
        portico.start()
        key = portico.configure()
        gw_headers = {"Host": f"{SERVICE}.{DOMAIN}", "Ocp-Apim-Subscription-Key": key}
        gw_url = f"http://127.0.0.1:{portico.gw_port}/bench/item"
        wait_http(gw_url, gw_headers, timeout=10)
        direct_url = f"http://127.0.0.1:{backend_port}/bench/item"
        nginx_url = f"http://127.0.0.1:{nginx_port}/bench/item"
        wait_http(nginx_url)
        floor_url = f"http://127.0.0.1:{floor_port}/bench/item"
        wait_http(floor_url)
        lean_port = free_port()
        lean_proc = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench" / "lean_proxy.py"),
                str(lean_port),
                str(backend_port),
                "--key",
                key,
                "--workers",
                str(args.workers),
            ]
        )
        procs.append(lean_proc)
        lean_url = f"http://127.0.0.1:{lean_port}/bench/item"
        wait_http(lean_url, gw_headers)
        d, c = args.duration, args.connections
        # warm-up (connection pools, caches)
        wrk(gw_url, duration=2, connections=c, headers=gw_headers)
        wrk(nginx_url, duration=2, connections=c, headers={})
        wrk(floor_url, duration=2, connections=c, headers={})
        wrk(lean_url, duration=2, connections=c, headers=gw_headers)
        time.sleep(2.0)  # the warm-up's records reach the usage table first
        before = portico.usage_total()
        assert portico.proc is not None
        # Interleaved rounds: this machine's speed drifts by 2x within minutes, so each ratio is
        # taken between runs made seconds apart, and the median of the rounds is reported.
        rounds: list[dict[str, dict[str, float]]] = []
        for _ in range(args.rounds):
            rounds.append(
                {
                    "backend": wrk(direct_url, duration=d, connections=c, headers={}),
                    "nginx": wrk(nginx_url, duration=d, connections=c, headers={}),
                    "floor": measured_cpu(
                        floor_proc.pid, lambda: wrk(floor_url, duration=d, connections=c, headers={})
                    ),
                    "lean": measured_cpu(
                        lean_proc.pid, lambda: wrk(lean_url, duration=d, connections=c, headers=gw_headers)
                    ),
                    "portico": measured_cpu(
                        portico.proc.pid, lambda: wrk(gw_url, duration=d, connections=c, headers=gw_headers)
                    ),
                }
            )
        peak = {k: combined([r[k] for r in rounds]) for k in rounds[0]}
        half = peak["portico"]["rps"] / 2
        paced_conn = 16
        delay = paced_conn * 1000.0 / half
        paced = {
            "backend": wrk(direct_url, duration=d, connections=paced_conn, headers={}, delay_ms=delay),
            "nginx": wrk(nginx_url, duration=d, connections=paced_conn, headers={}, delay_ms=delay),
            "portico": wrk(gw_url, duration=d, connections=paced_conn, headers=gw_headers, delay_ms=delay),
        }
        time.sleep(2.0)  # let the usage writer flush
        recorded = portico.usage_total() - before
        sent = int(peak["portico"]["requests"] + paced["portico"]["requests"])
    finally:
        if portico is not None:
            portico.stop()
        for p in procs:
            p.terminate()
            p.wait(10)
        shutil.rmtree(root, ignore_errors=True)

    ratios = {k: [r[k]["rps"] / r["nginx"]["rps"] for r in rounds] for k in ("floor", "lean", "portico")}
    ratio = statistics.median(ratios["portico"])
    floor_ratio = statistics.median(ratios["floor"])
    lean_ratio = statistics.median(ratios["lean"])
    add = {k: {p: paced[k][p] - paced["backend"][p] for p in ("p50", "p99")} for k in ("nginx", "portico")}
    cpu = os.cpu_count()
    lines = [
        f"Measured by `python bench/gateway.py --duration {d} --rounds {args.rounds} --connections {c} --workers {args.workers}` on {time.strftime('%Y-%m-%d')} "
        f"({cpu} cores; wrk, nginx backend and proxies all on this machine, loopback).",
        "",
        f"Setup: backend = nginx (1 worker) returning a static JSON body; nginx proxy = {args.workers} worker(s),",
        f"keep-alive upstream; Portico = `portico serve` with {args.workers} gateway worker process(es) (SO_REUSEPORT,",
        "httptools on uvloop) beside the management process, a subscription-key check, an API-level `rate-limit`",
        "policy (high limit: counted, never refused; counters shared by the workers) and analytics on (every request",
        "sent to the node's process and written to the `usage` table).",
        "",
        f"| peak ({c} connections, median of {args.rounds} rounds of {d} s) | requests/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for k, label in (
        ("backend", "backend direct"),
        ("nginx", "nginx proxy"),
        ("floor", "Python floor proxy (bench/floor_proxy.py)"),
        ("lean", "floor + the essential work (bench/lean_proxy.py)"),
        ("portico", "Portico gateway"),
    ):
        r = peak[k]
        lines.append(
            f"| {label} | {r['rps']:,.0f} | {r.get('p50', 0):.2f} | {r.get('p99', 0):.2f} | {int(r['errors'])} |"
        )
    lines += [
        "",
        f"Each figure is the median of {args.rounds} interleaved rounds of {d} s per proxy; ratios are taken"
        " within a round. Portico's share of nginx per round: "
        + ", ".join(f"{x:.0%}" for x in ratios["portico"])
        + ".",
        "",
        f"**Throughput: Portico = {ratio:.0%} of nginx** (target ≥ 50%: {'met' if ratio >= 0.5 else 'NOT met'}). "
        f"The least any Python proxy on the same stack does (`bench/floor_proxy.py`, {args.workers} worker(s)) "
        f"reaches {floor_ratio:.0%} of nginx in the same run; Portico reaches "
        f"{statistics.median(r['portico']['rps'] / r['floor']['rps'] for r in rounds):.0%} of that floor. The floor plus the work Portico"
        f" cannot skip on this request (`bench/lean_proxy.py`: routing, key check, the shared counter, a usage"
        f" record encoded, not ingested) reaches {lean_ratio:.0%} of nginx."
        f" CPU per proxied request (user + system): floor {peak['floor']['cpu_us']:.0f} µs, lean"
        f" {peak['lean']['workers_us']:.0f} µs, Portico {peak['portico']['cpu_us']:.0f} µs"
        f" ({peak['portico']['workers_us']:.0f} µs in the gateway workers, {peak['portico']['parent_us']:.0f} µs"
        " in the node's process, which takes in the usage records and writes them).",
        "",
        f"| paced at half of Portico's peak (~{half:,.0f} req/s, {paced_conn} connections) | achieved req/s | p50 ms | p99 ms | added p50 ms | added p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k, label in (("backend", "backend direct"), ("nginx", "nginx proxy"), ("portico", "Portico gateway")):
        r = paced[k]
        extra = f"{add[k]['p50']:.2f} | {add[k]['p99']:.2f}" if k != "backend" else "- | -"
        lines.append(
            f"| {label} | {r['rps']:,.0f} | {r.get('p50', 0):.2f} | {r.get('p99', 0):.2f} | {extra} |"
        )
    lines += [
        "",
        f"**Added latency at half of peak: p50 {add['portico']['p50']:.2f} ms, p99 {add['portico']['p99']:.2f} ms** "
        f"(target p99 ≤ 5 ms: {'met' if add['portico']['p99'] <= 5 else 'NOT met'}).",
        "",
        f"Analytics: {recorded:,} of {sent:,} gateway requests of the measured runs are in the reports API (byApi) "
        "after the writer's flush (a surplus: requests in flight when wrk stopped, which it does not count).",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_results(text)


if __name__ == "__main__":
    main()
