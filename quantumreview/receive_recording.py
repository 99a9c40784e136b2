"""What `quantumreview receive` lists under a handler: every GitHub request it made, through ctx.gh or ctx.github.

Why ctx.github too: an App-level read (`ctx.github.as_app()`) or an artifact listing went through the App object,
unlisted, so the report left out requests the handler made.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from quantumreview import github_artifacts as artifacts

# The HTTP method each client call sends. Why: "GETITEM /repos/…" named a Python method, not what was sent.
HTTP_METHODS = {"getitem": "GET", "getstatus": "GET", "getpage": "GET", "redirect_location": "GET", "post": "POST",
                "patch": "PATCH", "put": "PUT", "delete": "DELETE"}


class RecordingGitHub:
    """Wraps an installation client and records each call (HTTP method and URL) a handler makes."""

    def __init__(self, inner: Any, calls: list[str]) -> None:
        self._inner = inner
        self.calls = calls

    def _wrap(self, name: str) -> Callable[..., Any]:
        async def call(url: str, *args: Any, **kwargs: Any) -> Any:
            self.calls.append(f"{HTTP_METHODS[name]} {url}")
            return await getattr(self._inner, name)(url, *args, **kwargs)

        return call

    def __getattr__(self, name: str) -> Any:
        if name in HTTP_METHODS:
            return self._wrap(name)
        if name == "getiter":
            return self._getiter
        if name == "graphql":
            return self._graphql
        return getattr(self._inner, name)

    async def _getiter(self, url: str, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        self.calls.append(f"GET {url} (every page)")
        async for item in self._inner.getiter(url, *args, **kwargs):
            yield item

    async def _graphql(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("POST /graphql")
        return await self._inner.graphql(query, *args, **kwargs)



class RecordingApp:
    """Wraps the GitHubApp: the clients it hands out record their requests in `calls`, as do its artifact calls."""

    def __init__(self, inner: Any, calls: list[str]) -> None:
        self._inner = inner
        self.calls = calls

    def for_installation(self, installation_id: int | None) -> RecordingGitHub:
        return RecordingGitHub(self._inner.for_installation(installation_id), self.calls)

    def as_app(self) -> RecordingGitHub:
        return RecordingGitHub(self._inner.as_app(), self.calls)

    async def list_artifacts(self, installation_id: int, repo: str, run_id: int) -> list[dict[str, Any]]:
        client: Any = self.for_installation(installation_id)  # the InstallationAPI's calls, recorded
        return await artifacts.list_artifacts(client, repo, run_id)

    async def download_artifact(self, installation_id: int, repo: str, artifact: dict[str, Any], *, dest_dir: Path,
                                **kwargs: Any) -> Path:
        # Why only the API request: the archive's address it redirects to is a credential, never printed.
        self.calls.append(f"GET /repos/{repo}/actions/artifacts/{artifact.get('id')}/zip (then its archive)")
        path: Path = await self._inner.download_artifact(installation_id, repo, artifact, dest_dir=dest_dir, **kwargs)
        return path

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
