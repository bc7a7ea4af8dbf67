"""Small client for the Flink REST API, used by tests (and benchmarks) to watch jobs and metrics."""
from __future__ import annotations

import json
import urllib.parse
import urllib.request


class FlinkRest:
    def __init__(self, base: str = "http://localhost:8081"):
        self.base = base.rstrip("/")

    def _get(self, path: str):
        with urllib.request.urlopen(self.base + path, timeout=5) as r:
            return json.load(r)

    def job(self, job_id: str) -> dict:
        return self._get(f"/jobs/{job_id}")

    def state(self, job_id: str) -> str:
        return self.job(job_id)["state"]

    def cancel(self, job_id: str) -> None:
        req = urllib.request.Request(f"{self.base}/jobs/{job_id}?mode=cancel", method="PATCH")
        urllib.request.urlopen(req, timeout=5).read()

    def udf_metrics(self, job_id: str, group: str = "online_ml") -> dict[str, str]:
        """Every metric of the UDF's group, short name -> value (as the REST API gives it)."""
        out: dict[str, str] = {}
        for vertex in self.job(job_id)["vertices"]:
            ids = [m["id"] for m in self._get(f"/jobs/{job_id}/vertices/{vertex['id']}/metrics")
                   if f".{group}." in m["id"]]
            if not ids:
                continue
            query = urllib.parse.quote(",".join(ids), safe=",")
            for m in self._get(f"/jobs/{job_id}/vertices/{vertex['id']}/metrics?get={query}"):
                out[m["id"].split(f".{group}.", 1)[1]] = m["value"]
        return out
