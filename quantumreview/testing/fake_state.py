"""In-memory state of the fake GitHub: installations, repositories, issues, pulls, checks, runs, users."""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quantumreview.testing import fake_shapes as shapes

APP_SLUG = "quantumreview-test"
MAX_PULL_FILES = 3000  # GitHub lists at most 3,000 files of a pull request


@dataclass
class RecordedRequest:
    """One request the fake received, and the status it answered."""

    method: str
    path: str
    route: str | None
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    body: bytes
    host: str
    at: float
    status: int = 0


@dataclass(frozen=True)
class Fault:
    """A scripted response for one request: a status, a dropped connection, a hang or a delay."""

    kind: str = "status"
    status: int = 500
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0


@dataclass
class BlobScript:
    """How the artifact blob host answers for one artifact (reliability cases AR-02, AR-05, AR-08)."""

    body_size: int | None = None
    content_length: int | None = None
    omit_content_length: bool = False
    chunk_size: int = 65536
    chunk_delay: float = 0.0
    html_status: int | None = None


@dataclass
class Token:
    """An installation or user access token."""

    value: str
    expires_at: float
    installation_id: int | None = None
    login: str | None = None


@dataclass
class Artifact:
    """A workflow run artifact and its zip bytes."""

    json: dict[str, Any]
    data: bytes
    blob_key: str
    blob_sig: str


@dataclass
class FakeState:
    """Everything the fake GitHub knows; route handlers read and change it."""

    app_id: int
    clock: Callable[[], float] = time.time
    api_url: str = ""
    web_url: str = ""
    blob_url: str = ""
    token_ttl: float = 3600.0
    installations: dict[int, dict[str, Any]] = field(default_factory=dict)
    installation_repos: dict[int, list[str]] = field(default_factory=dict)
    suspended: set[int] = field(default_factory=set)
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    issues: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    comments: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    pulls: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    pull_files: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    check_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    check_run_annotations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    workflow_runs: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    # repo -> its Actions workflows; a repository left out has one, "CI" (see repo_workflows)
    workflows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    artifacts: dict[int, Artifact] = field(default_factory=dict)
    run_artifacts: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    blob_scripts: dict[int, BlobScript] = field(default_factory=dict)
    blob_bytes_sent: dict[int, int] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    user_installations: dict[str, dict[int, list[str]]] = field(default_factory=dict)
    user_permissions: dict[str, dict[str, dict[str, bool]]] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    hook_deliveries: list[dict[str, Any]] = field(default_factory=list)
    hook_payloads: dict[int, bytes] = field(default_factory=dict)
    manifest_codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    private_key_pem: str | None = None
    oauth_client_id: str = "Iv1.fakeclientid"
    oauth_client_secret: str = "fake-oauth-client-secret"  # noqa: S105 - a fixture value
    current_login: str | None = None
    oauth_codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    revoked_user_tokens: list[str] = field(default_factory=list)  # DELETE /applications/{client_id}/token
    webhook_url: str | None = None
    webhook_secret: str = ""
    created_apps: list[dict[str, Any]] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    contract_violations: list[str] = field(default_factory=list)
    faults: dict[tuple[str, str], deque[Fault]] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def next_id(self) -> int:
        """Return a fresh object id."""
        return next(self.ids)

    def bot_user(self) -> dict[str, Any]:
        """Return the app's bot user, the author of what an installation token creates."""
        return shapes.user_json(f"{APP_SLUG}[bot]", 900000 + self.app_id, api=self.api_url,
                                web=self.web_url, kind="Bot")

    def account(self, login: str) -> dict[str, Any]:
        """Return the user or organization object for login, creating a plain one on first use."""
        if login not in self.users:
            self.users[login] = shapes.user_json(login, self.next_id(), api=self.api_url, web=self.web_url)
        return self.users[login]

    def add_repository(self, installation_id: int, full_name: str) -> dict[str, Any]:
        """Create (or reuse) a repository and add it to the installation."""
        if full_name not in self.repos:
            owner = self.account(full_name.split("/", 1)[0])
            self.repos[full_name] = shapes.repo_json(full_name, self.next_id(), owner,
                                                     api=self.api_url, web=self.web_url)
        listed = self.installation_repos.setdefault(installation_id, [])
        if full_name not in listed:
            listed.append(full_name)
        return self.repos[full_name]

    def add_installation(
        self, installation_id: int, *, account: str, repositories: Sequence[str], repository_selection: str,
    ) -> dict[str, Any]:
        """Create an installation of the app on account, with its repositories."""
        owner = self.account(account)
        self.installations[installation_id] = {
            "id": installation_id,
            "account": owner,
            "app_id": self.app_id,
            "app_slug": APP_SLUG,
            "target_id": owner["id"],
            "target_type": "Organization",
            "repository_selection": repository_selection,
            "permissions": {"issues": "write", "pull_requests": "read", "checks": "write",
                            "actions": "read", "metadata": "read"},
            "events": ["issues", "pull_request", "workflow_run", "check_run"],
            "access_tokens_url": f"{self.api_url}/app/installations/{installation_id}/access_tokens",
            "repositories_url": f"{self.api_url}/installation/repositories",
            "html_url": f"{self.web_url}/organizations/{account}/settings/installations/{installation_id}",
            "created_at": shapes.iso(self.clock()),
            "updated_at": shapes.iso(self.clock()),
            "suspended_at": None,
            "suspended_by": None,
        }
        self.installation_repos.setdefault(installation_id, [])
        for full_name in repositories:
            self.add_repository(installation_id, full_name)
        return self.installations[installation_id]

    def remove_installation(self, installation_id: int) -> None:
        """Forget an installation; its tokens stop working."""
        self.installations.pop(installation_id, None)
        self.installation_repos.pop(installation_id, None)
        for value in [v for v, t in self.tokens.items() if t.installation_id == installation_id]:
            del self.tokens[value]

    def mint_installation_token(self, installation_id: int) -> Token:
        """Create an installation access token that lives token_ttl seconds."""
        token = Token("ghs_" + secrets.token_hex(18), self.clock() + self.token_ttl, installation_id=installation_id)
        self.tokens[token.value] = token
        return token

    def mint_user_token(self, login: str, ttl: float = 28800.0) -> Token:
        """Create a user access token (ghu_...)."""
        token = Token("ghu_" + secrets.token_hex(18), self.clock() + ttl, login=login)
        self.tokens[token.value] = token
        return token

    def live_token(self, value: str) -> Token | None:
        """Return the token when it exists and has not expired."""
        token = self.tokens.get(value)
        if token is None or token.expires_at <= self.clock():
            return None
        return token

    def expire_tokens(self) -> None:
        """Make every existing token expired."""
        for token in self.tokens.values():
            token.expires_at = self.clock() - 1

    def token_reaches(self, token: Token, full_name: str) -> bool:
        """Tell whether the token may read full_name."""
        if full_name not in self.repos:
            return False
        if token.installation_id is not None:
            return full_name in self.installation_repos.get(token.installation_id, [])
        repos = self.user_installations.get(token.login or "", {})
        return any(full_name in names for names in repos.values())

    def add_issue(self, repo: str, number: int, *, title: str, body: str | None, state: str) -> dict[str, Any]:
        """Create an issue in repo, authored by a plain user."""
        issue = shapes.issue_json(repo, number, self.next_id(), title=title, body=body, state=state,
                                  user=self.account("octocat"), now=self.clock(),
                                  api=self.api_url, web=self.web_url)
        self.issues[(repo, number)] = issue
        self.comments.setdefault((repo, number), [])
        return issue

    def add_pull(
        self, repo: str, number: int, *, title: str, body: str | None, head_sha: str, head_ref: str,
        base_ref: str, files: Sequence[Mapping[str, Any]],
    ) -> dict[str, Any]:
        """Create a pull request (and its issue twin) with files and patches."""
        issue = self.add_issue(repo, number, title=title, body=body, state="open")
        issue["pull_request"] = {"url": f"{self.api_url}/repos/{repo}/pulls/{number}",
                                 "html_url": f"{self.web_url}/{repo}/pull/{number}"}
        repository = self.repos.get(repo) or shapes.repo_json(
            repo, self.next_id(), self.account(repo.split("/")[0]), api=self.api_url, web=self.web_url)
        owner = repo.split("/")[0]
        pull: dict[str, Any] = {
            **{k: issue[k] for k in ("title", "body", "state", "locked", "user", "labels", "created_at",
                                     "updated_at", "closed_at", "author_association")},
            "id": self.next_id(),
            "node_id": shapes.node_id("PR", number),
            "number": number,
            "url": f"{self.api_url}/repos/{repo}/pulls/{number}",
            "html_url": f"{self.web_url}/{repo}/pull/{number}",
            "issue_url": f"{self.api_url}/repos/{repo}/issues/{number}",
            "draft": False,
            "merged": False,
            "merged_at": None,
            "head": {"sha": head_sha, "ref": head_ref, "label": f"{owner}:{head_ref}", "repo": repository},
            "base": {"sha": "0" * 40, "ref": base_ref, "label": f"{owner}:{base_ref}", "repo": repository},
        }
        self.pulls[(repo, number)] = pull
        listed = [shapes.pull_file_json(repo, head_sha, f, api=self.api_url, web=self.web_url) for f in files]
        self.pull_files[(repo, number)] = listed[:MAX_PULL_FILES]
        return pull

    def add_comment(self, repo: str, issue_number: int, body: str, user: Mapping[str, Any]) -> dict[str, Any]:
        """Append a comment to an issue."""
        comment = shapes.comment_json(repo, issue_number, self.next_id(), body=body, user=user,
                                      now=self.clock(), api=self.api_url, web=self.web_url)
        self.comments.setdefault((repo, issue_number), []).append(comment)
        issue = self.issues.get((repo, issue_number))
        if issue is not None:
            issue["comments"] = len(self.comments[(repo, issue_number)])
        return comment

    def find_comment(self, repo: str, comment_id: int) -> dict[str, Any] | None:
        """Return the comment with comment_id in repo."""
        for (name, _), listed in self.comments.items():
            for comment in listed:
                if name == repo and comment["id"] == comment_id:
                    return comment
        return None

    def find_check_run(self, repo: str, check_run_id: int) -> dict[str, Any] | None:
        """Return the check run with check_run_id in repo."""
        return next((r for r in self.check_runs.get(repo, []) if r["id"] == check_run_id), None)

    def add_workflow_run(
        self, repo: str, run_id: int, *, head_sha: str, run_attempt: int, conclusion: str,
        pull_requests: Sequence[int], artifacts: Mapping[str, Mapping[str, bytes]], expired: Sequence[str],
        declared_sizes: Mapping[str, int], status: str = "completed", started_at: float | None = None,
        name: str = "CI",
    ) -> dict[str, Any]:
        """Create a workflow run (completed unless `status` says otherwise) with real zip artifacts."""
        now = self.clock()
        prs: list[dict[str, Any]] = []
        for number in pull_requests:
            pull = self.pulls.get((repo, number))
            head_ref = pull["head"]["ref"] if pull else "feature"
            base_ref = pull["base"]["ref"] if pull else "main"
            prs.append({"id": self.next_id(), "number": number,
                        "url": f"{self.api_url}/repos/{repo}/pulls/{number}",
                        "head": {"sha": head_sha, "ref": head_ref}, "base": {"sha": "0" * 40, "ref": base_ref}})
        repository = self.repos.get(repo) or shapes.repo_json(
            repo, self.next_id(), self.account(repo.split("/")[0]), api=self.api_url, web=self.web_url)
        run: dict[str, Any] = {
            "id": run_id, "node_id": shapes.node_id("WFR", run_id), "name": name, "run_number": run_id % 1000,
            "run_attempt": run_attempt, "event": "pull_request", "status": status,
            "conclusion": conclusion if status == "completed" else None,
            "head_sha": head_sha, "head_branch": prs[0]["head"]["ref"] if prs else "main",
            "pull_requests": prs, "check_suite_id": self.next_id(), "workflow_id": 1,
            "url": f"{self.api_url}/repos/{repo}/actions/runs/{run_id}",
            "html_url": f"{self.web_url}/{repo}/actions/runs/{run_id}",
            "artifacts_url": f"{self.api_url}/repos/{repo}/actions/runs/{run_id}/artifacts",
            "created_at": shapes.iso(now), "updated_at": shapes.iso(now),
            "run_started_at": shapes.iso(now if started_at is None else started_at),
            "repository": repository, "head_repository": repository,
        }
        self.workflow_runs[(repo, run_id)] = run
        ids: list[int] = []
        for name, files in artifacts.items():
            ids.append(self.add_artifact(repo, run, name, files, expired=name in expired,
                                         declared_size=declared_sizes.get(name)))
        self.run_artifacts[(repo, run_id)] = ids
        return run

    def repo_workflows(self, repo: str) -> list[dict[str, Any]]:
        """The repository's workflows: those set for it, else one named "CI" (id 1, as add_workflow_run's runs)."""
        if repo in self.workflows:
            return self.workflows[repo]
        return [shapes.workflow_json(repo, 1, "CI", ".github/workflows/ci.yml", now=self.clock(), api=self.api_url,
                                     web=self.web_url)]

    def set_workflows(self, repo: str, names: Sequence[str]) -> list[dict[str, Any]]:
        """Give the repository exactly these workflows (none: a repository without CI)."""
        self.workflows[repo] = [
            shapes.workflow_json(repo, self.next_id(), name, f".github/workflows/{name.lower().replace(' ', '-')}.yml",
                                 now=self.clock(), api=self.api_url, web=self.web_url)
            for name in names]
        return self.workflows[repo]

    def add_artifact(
        self, repo: str, run: Mapping[str, Any], name: str, files: Mapping[str, bytes], *, expired: bool,
        declared_size: int | None,
    ) -> int:
        """Create one artifact of a run; return its id."""
        artifact_id = self.next_id()
        data = shapes.zip_bytes(files)
        now = self.clock()
        self.artifacts[artifact_id] = Artifact(
            json={
                "id": artifact_id, "node_id": shapes.node_id("A", artifact_id), "name": name,
                "size_in_bytes": len(data) if declared_size is None else declared_size,
                "url": f"{self.api_url}/repos/{repo}/actions/artifacts/{artifact_id}",
                "archive_download_url": f"{self.api_url}/repos/{repo}/actions/artifacts/{artifact_id}/zip",
                "expired": expired, "created_at": shapes.iso(now), "updated_at": shapes.iso(now),
                "expires_at": shapes.iso(now - 60 if expired else now + 90 * 86400),
                "workflow_run": {"id": run["id"], "repository_id": run["repository"]["id"],
                                 "head_repository_id": run["repository"]["id"],
                                 "head_branch": run["head_branch"], "head_sha": run["head_sha"]},
            },
            data=data,
            blob_key=secrets.token_hex(8),
            blob_sig=secrets.token_hex(16),
        )
        return artifact_id

    def add_user(
        self, login: str, user_id: int, *, installations: Mapping[int, Sequence[str]],
        permissions: Mapping[str, Mapping[str, bool]],
    ) -> dict[str, Any]:
        """Create a user who can see the given installations and repositories."""
        user = shapes.user_json(login, user_id, api=self.api_url, web=self.web_url)
        user.update({"name": login.title(), "email": f"{login}@users.noreply.example"})
        self.users[login] = user
        self.user_installations[login] = {i: list(names) for i, names in installations.items()}
        self.user_permissions[login] = {name: dict(p) for name, p in permissions.items()}
        return user

    def add_hook_delivery(
        self, guid: str, *, status: str, event: str, action: str | None, delivered_at: float | None,
        redelivery: bool, payload: bytes | None = None,
    ) -> dict[str, Any]:
        """Record a webhook delivery attempt in the app's delivery log."""
        delivery_id = self.next_id()
        delivery = {
            "id": delivery_id, "guid": guid,
            "delivered_at": shapes.iso(self.clock() if delivered_at is None else delivered_at),
            "redelivery": redelivery, "duration": 0.27, "status": status,
            "status_code": 200 if status == "OK" else 502, "event": event, "action": action,
            "installation_id": next(iter(self.installations), None), "repository_id": None, "throttled_at": None,
        }
        self.hook_deliveries.append(delivery)
        if payload is not None:
            self.hook_payloads[delivery_id] = payload
        return delivery
