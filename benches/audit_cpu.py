#!/usr/bin/env python3
"""The sidecar's CPU per ingested audit event: the steadier figure beside events/s on a shared,
noisy machine. Starts BIN on the config of an `audit.py` work dir (an empty data dir), waits past
the first background verification, sends EVENTS events over CONNECTIONS with audit-load, and
prints events/s and sidecar CPU µs per event (from /proc).

    python3 benches/audit_cpu.py BIN WORKDIR CONNECTIONS EVENTS ['extra YAML']

WORKDIR is one `audit.py ingest` made (its sidecar.yaml and caller-secret); its data dir is
replaced.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

LOAD = Path(__file__).resolve().parent.parent / "target" / "release" / "audit-load"


def main():
    binary, work, connections, events = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    extra = sys.argv[5] if len(sys.argv) > 5 else ""
    os.chdir(work)
    shutil.rmtree("data", ignore_errors=True)
    config = Path("sidecar.yaml").read_text().split("\naudit:")[0] + (f"\n{extra}\n" if extra else "")
    Path("cpu-run.yaml").write_text(config)
    port = int(config.split("listen: 127.0.0.1:")[1].split()[0])
    with open("cpu-run.log", "w") as log:
        proc = subprocess.Popen([str(binary), "serve", "--config", "cpu-run.yaml"], stderr=log)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)

        def cpu_s():
            fields = Path(f"/proc/{proc.pid}/stat").read_text().split(")")[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        time.sleep(6)  # past the first background verification
        c0, t0 = cpu_s(), time.time()
        out = subprocess.run([str(LOAD), "--url", f"http://127.0.0.1:{port}", "--caller-id", "bench",
                              "--secret-file", "caller-secret", "--connections", connections, "--batch", "200",
                              "--events", events], capture_output=True, text=True, check=True)
        c1, t1 = cpu_s(), time.time()
    finally:
        proc.terminate()
        proc.wait()
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps({"events_per_s": round(r["events_per_s"]),
                      "sidecar_cpu_us_per_event": round((c1 - c0) / r["accepted"] * 1e6, 3),
                      "sidecar_cores": round((c1 - c0) / (t1 - t0), 2), "client_cpu_share": r["client_cpu_share"]}))


if __name__ == "__main__":
    main()
