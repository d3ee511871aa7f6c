"""The run's environment: the child servers, a throwaway CA, and fal-client pointed at them.

fal-client always speaks TLS, so the gateway child also listens with a certificate
from a ``trustme`` CA made here. fal-client is pointed at it the way the interop
tests do (``tests/test_interop_fal_client.py``): its two module constants are
patched and ``SSL_CERT_FILE`` names the CA's PEM; this project's client gets an
``ssl_context`` trusting the same CA, so the TLS pair is measured on equal terms.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from ._harness import Options
from ._servers import ServerInfo, serve_child

__all__ = ["KEY", "Env", "environment"]

#: Any key: the gateway runs with auth off, and use_jwt=False keeps token fetches out of loops.
KEY = "bench-key-id:bench-key-secret"


@dataclass(slots=True)
class Env:
    """Everything a scenario needs to reach the servers."""

    opts: Options
    gateway: ServerInfo
    upstream: ServerInfo
    ssl_context: ssl.SSLContext
    fal_client: Any  # the fal_client module, or None when it is not installed
    tmp: str

    async def set_faults(self, app: str, spec: str | None) -> None:
        """Set per-app faults on the gateway child (``Gateway.set_faults``)."""
        async with aiohttp.ClientSession() as http:
            url = f"{self.gateway.http}/_bench/faults"
            async with http.post(url, json={"app": app, "spec": spec}) as resp:
                resp.raise_for_status()

    async def gateway_rss(self) -> int:
        """Return the gateway child's RSS in bytes."""
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{self.gateway.http}/_bench/rss") as resp:
                return int(orjson.loads(await resp.read())["rss"])


@contextlib.asynccontextmanager
async def environment(opts: Options, *, uvloop: bool = False) -> AsyncIterator[Env]:
    """Start the upstream and gateway children; point fal-client at the gateway."""
    import trustme

    extra = ["--uvloop"] if uvloop else []
    with tempfile.TemporaryDirectory(prefix="fal-rt-bench-") as tmp:
        ca = trustme.CA()
        pem = os.path.join(tmp, "server.pem")
        ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(pem)
        ca_pem = os.path.join(tmp, "ca.pem")
        ca.cert_pem.write_to_path(ca_pem)
        context = ssl.create_default_context(cafile=ca_pem)
        async with (
            serve_child("upstream", *extra) as upstream,
            serve_child(
                "gateway", "--upstream", upstream.http, "--tls-pem", pem, *extra
            ) as gateway,
        ):
            with _fal_client_pointed_at(gateway, ca_pem) as fal_client:
                yield Env(opts, gateway, upstream, context, fal_client, tmp)


@contextlib.contextmanager
def _fal_client_pointed_at(gateway: ServerInfo, ca_pem: str) -> Any:
    try:
        import fal_client
        import fal_client.client
    except ImportError:
        yield None
        return
    saved_env = {k: os.environ.get(k) for k in ("SSL_CERT_FILE", "NO_PROXY", "no_proxy")}
    saved = (fal_client.client.REALTIME_URL_FORMAT, fal_client.client.REST_URL)
    os.environ["SSL_CERT_FILE"] = ca_pem
    # httpx and websockets read proxy variables; keep local traffic local.
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "*"
    fal_client.client.REALTIME_URL_FORMAT = f"{gateway.wss}/"
    fal_client.client.REST_URL = gateway.https
    try:
        yield fal_client
    finally:
        fal_client.client.REALTIME_URL_FORMAT, fal_client.client.REST_URL = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
