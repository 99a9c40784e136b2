"""Workflow-run artifacts: list them, and download one zip with a size cap, a deadline and no token on the blob host.

https://docs.github.com/en/rest/actions/artifacts#download-an-artifact — the API answers 302 to a signed,
short-lived blob URL; that URL is a credential, so it is never logged and gets no Authorization header.
The blob URL, and every redirect after it (at most MAX_REDIRECTS), must be on an allowed host: GitHub's blob
storage (ARTIFACT_HOSTS) or the API's own host (GitHub Enterprise Server); anything else is refused before a
request is sent, so a redirect cannot point the server at an internal address.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from quantumreview.errors import ArtifactError, RetryLater
from quantumreview.github_client import NETWORK_ERRORS, InstallationAPI
from quantumreview.settings import DEFAULT_ARTIFACT_HOSTS

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
DEFAULT_DOWNLOAD_TIMEOUT = 60.0
CHUNK = 64 * 1024
BLOB_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=20)  # the overall deadline is ours
MAX_REDIRECTS = 3
REDIRECTS = (301, 302, 303, 307, 308)


def host_allowed(url: str, allowed: Sequence[str], api_url: str) -> bool:
    """True if `url` is https (or http like the API itself) on the API's host or one `allowed` ("*.x" = under x)."""
    try:
        parts, api = urlsplit(url), urlsplit(api_url)
        host = (parts.hostname or "").lower()
    except ValueError:  # "https://[bad]/x": refused like any other host not allowed, not a crashed job
        return False
    if not host or parts.scheme not in ("https", api.scheme):
        return False
    if host == (api.hostname or "").lower():
        return True
    return any(host.endswith(pattern.lower()[1:]) if pattern.startswith("*.") else host == pattern.lower()
               for pattern in allowed)


async def list_artifacts(gh: InstallationAPI, repo: str, run_id: int) -> list[dict[str, Any]]:
    """Return every artifact of a workflow run (all pages)."""
    url = f"/repos/{repo}/actions/runs/{int(run_id)}/artifacts?per_page=100"
    return [item async for item in gh.getiter(url, iterable_key="artifacts")]


def refuse_unusable(artifact: Mapping[str, Any], max_bytes: int) -> int:
    """Return the artifact id, or raise ArtifactError when it is expired or declared larger than the cap."""
    artifact_id = artifact.get("id")
    if not isinstance(artifact_id, int):
        raise ArtifactError("artifact has no numeric id")
    if artifact.get("expired"):
        raise ArtifactError(f"artifact {artifact_id} has expired")
    size = artifact.get("size_in_bytes")
    if isinstance(size, int) and size > max_bytes:
        raise ArtifactError(f"artifact {artifact_id} is too large ({size} bytes > {max_bytes})")
    return artifact_id


async def download_artifact(gh: InstallationAPI, session: aiohttp.ClientSession, repo: str,
                            artifact: Mapping[str, Any], *, dest_dir: Path, max_bytes: int = DEFAULT_MAX_BYTES,
                            timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
                            allowed_hosts: Sequence[str] = DEFAULT_ARTIFACT_HOSTS) -> Path:
    """Download an artifact zip into dest_dir and return its path; partial files never remain.

    Expired, too large, missing redirect, a host not allowed, too many redirects or a cap overrun →
    ArtifactError (not retried); a network failure or the `timeout` deadline → RetryLater.
    """
    artifact_id = refuse_unusable(artifact, max_bytes)
    status, location = await gh.redirect_location(f"/repos/{repo}/actions/artifacts/{artifact_id}/zip")
    if status in (404, 410):
        raise ArtifactError(f"artifact {artifact_id} is expired or gone ({status})")
    if status not in REDIRECTS or not location or not location.startswith(("https://", "http://")):
        raise ArtifactError(f"artifact {artifact_id}: GitHub answered {status} without a download redirect")
    handle, part = open_part_file(dest_dir, artifact_id)
    try:
        with handle:
            async with asyncio.timeout(timeout):
                await stream_blob(session, location, handle, artifact_id=artifact_id, max_bytes=max_bytes,
                                  allowed=lambda url: host_allowed(url, allowed_hosts, gh.base_url))
        final = dest_dir / f"artifact-{artifact_id}.zip"
        os.replace(part, final)
        return final
    except TimeoutError:
        raise RetryLater(f"artifact {artifact_id}: download took longer than {timeout:g} s") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


def open_part_file(dest_dir: Path, artifact_id: int) -> tuple[IO[bytes], Path]:
    """Create a private temporary file in dest_dir (made if missing) for the download."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest_dir, prefix=f"artifact-{artifact_id}-", suffix=".part")
    return os.fdopen(fd, "wb"), Path(name)


async def stream_blob(session: aiohttp.ClientSession, location: str, out: IO[bytes], *, artifact_id: int,
                      max_bytes: int, allowed: Callable[[str], bool] = lambda url: True) -> int:
    """Fetch the signed URL with no credentials and copy it to `out`, stopping past max_bytes; return the size.

    Redirects are followed here, at most MAX_REDIRECTS, each only to a URL `allowed` accepts.
    """
    url = location
    try:
        for _ in range(MAX_REDIRECTS + 1):
            if not allowed(url):  # only the host is named: the URL itself is a credential
                raise ArtifactError(f"artifact {artifact_id}: refused to download from {_host_of(url)!r}, "
                                    "not an allowed artifact host (ARTIFACT_HOSTS)")
            # Why: a fresh request with no auth headers; the signed URL carries its own authorization.
            async with session.get(url, allow_redirects=False, timeout=BLOB_TIMEOUT) as response:
                if response.status in REDIRECTS:
                    url = urljoin(url, response.headers.get("Location", ""))
                    continue
                return await _copy(response, out, artifact_id=artifact_id, max_bytes=max_bytes)
        raise ArtifactError(f"artifact {artifact_id}: more than {MAX_REDIRECTS} redirects from blob storage")
    except NETWORK_ERRORS as exc:
        # Why: aiohttp's error text can include the signed URL; keep only the type.
        raise RetryLater(f"artifact {artifact_id}: blob download failed ({type(exc).__name__})") from None
    except aiohttp.ClientError as exc:  # invalid URL, non-HTTP redirect: retrying will not help
        raise ArtifactError(f"artifact {artifact_id}: blob download refused ({type(exc).__name__})") from None


def _host_of(url: str) -> str | None:
    """The URL's host for a message (never the URL: it is a credential); None when it has none or is malformed."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


async def _copy(response: aiohttp.ClientResponse, out: IO[bytes], *, artifact_id: int, max_bytes: int) -> int:
    if response.status >= 500 or response.status == 429:
        raise RetryLater(f"artifact {artifact_id}: blob storage answered {response.status}")
    if response.status != 200:
        raise ArtifactError(f"artifact {artifact_id}: blob storage answered {response.status}")
    written = 0
    async for chunk in response.content.iter_chunked(CHUNK):
        written += len(chunk)
        if written > max_bytes:  # real bytes, not Content-Length: it may lie or be absent
            raise ArtifactError(f"artifact {artifact_id} is larger than the {max_bytes}-byte cap")
        out.write(chunk)  # Why: a 64 KB write to local disk does not stall the loop noticeably
    return written
