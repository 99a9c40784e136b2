"""The OpenAPI 3.1 document of the dashboard API, built in code, served at GET /api/openapi.json."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from quantumreview.api.errors import INT_MAX, PAGE_MAX, PER_PAGE_DEFAULT, PER_PAGE_MAX
from quantumreview.api.issues import LINKED_PULLS_MAX

PATH = "/api/openapi.json"
SESSION_COOKIE = "quantum_session"
Schema = dict[str, Any]

routes = web.RouteTableDef()


def ref(name: str) -> Schema:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """`schema` or null."""
    return {"oneOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Schema]) -> Schema:
    """A closed object whose properties are all required."""
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
COUNT: Schema = {"type": "integer", "minimum": 0}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
ANY_OBJECT: Schema = {"type": "object"}
STATUS: Schema = {"type": "string", "enum": ["pending", "passed", "failed", "skipped", "missing"]}
TREND_BRANCH = ("the branch the health trend follows: the default branch as far as the stored rows tell (the base "
                "branch most pull requests target, else main, master, or the branch with the most scores); null "
                "when no score names a branch, and then every score but forks' is shown")
# Why both: `issues` always counted closed issues too, and a client may rely on that total.
ISSUE_COUNTS: dict[str, Schema] = {
    "issues": {**COUNT, "description": "issues with a checklist, open and closed"},
    "open_issues": {**COUNT, "description": "open issues with a checklist"},
}


def page_of(item: str) -> Schema:
    """The paginated list envelope around `item`."""
    return obj({"items": {"type": "array", "items": ref(item)}, "page": {"type": "integer", "minimum": 1},
                "per_page": {"type": "integer", "minimum": 1, "maximum": PER_PAGE_MAX}, "total": COUNT})


HEALTH = obj({"score": INT, "head_sha": STR, "branch": nullable(STR), "counts": ANY_OBJECT, "at": TIME})
PROGRESS = obj({k: COUNT for k in ("total", "passed", "failed", "skipped", "missing", "pending")})

SCHEMAS: dict[str, Schema] = {
    "Error": obj({"error": obj({"code": STR, "message": STR})}),
    "Me": obj({"id": INT, "login": STR, "name": nullable(STR), "avatar_url": nullable(STR),
               "repositories": COUNT, "unread_notifications": COUNT}),
    "RepoSummary": obj({"repo": STR, "installation_id": INT, "permission": STR, **ISSUE_COUNTS,
                        "open_pulls": COUNT}),
    "Installation": obj({"id": INT, "account_login": STR, "account_type": nullable(STR), "suspended": BOOL,
                         "deleted": BOOL}),
    "Health": HEALTH,
    "Repo": obj({"repo": STR, "permission": STR, "installation": nullable(ref("Installation")),
                 "installation_id": INT, **ISSUE_COUNTS, "open_pulls": COUNT,
                 "health": obj({"branch": {**nullable(STR), "description": TREND_BRANCH},
                                "latest": nullable(ref("Health")), "change": nullable(INT),
                                "trend": {"type": "array", "items": ref("Health")}})}),
    "InstallUrl": obj({"url": {"type": "string", "format": "uri"}, "installation_id": INT}),
    "Progress": PROGRESS,
    "IssueSummary": obj({"number": INT, "title": STR, "state": STR, "updated_at": TIME,
                         "progress": ref("Progress")}),
    "LinkedPull": obj({"repo": STR, "number": INT, "title": STR, "state": STR, "merged": BOOL,
                       "flagged_for_merge": BOOL}),
    "Issue": obj({"repo": STR, "number": INT, "title": STR, "state": STR, "retired": BOOL, "truncated": BOOL,
                  "total_found": COUNT, "progress": ref("Progress"),
                  "items": {"type": "array", "items": obj({"tid": STR, "text": STR, "detail": STR,
                                                           "status": STATUS})},
                  "retired_ids": {"type": "array", "items": obj({"tid": STR, "text": STR})},
                  "linked_pulls": {"type": "array", "items": ref("LinkedPull"), "maxItems": LINKED_PULLS_MAX,
                                   "description": f"pull requests linking the issue that you may see, the most "
                                                  f"recently updated first, at most {LINKED_PULLS_MAX}"},
                  "linked_pulls_truncated": {**BOOL, "description": "true when more pull requests link the issue "
                                                                    "than linked_pulls holds"}}),
    "Verdict": obj({"conclusion": nullable(STR), "passed": COUNT, "failed": COUNT, "skipped": COUNT,
                    "missing": COUNT}),
    "Criterion": obj({"repo": STR, "issue_number": INT, "tid": STR, "text": STR, "tests": COUNT,
                      "outcome": nullable(STR)}),
    "Pull": obj({"repo": STR, "number": INT, "title": STR, "state": STR, "merged": BOOL, "head_sha": nullable(STR),
                 "updated_at": TIME,
                 "linked_issues": {"type": "array", "items": obj({"repo": STR, "number": INT,
                                                                  "source": nullable(STR)})},
                 "manifest": nullable(obj({"head_sha": STR, "current": BOOL, "updated_at": TIME,
                                           "data": ANY_OBJECT})),
                 "verdict": nullable(ref("Verdict")), "criteria": {"type": "array", "items": ref("Criterion")},
                 "health": nullable(ref("Health")),
                 "flag": obj({"flagged": BOOL, "by": nullable(STR), "at": nullable(TIME)})}),
    "Accepted": obj({"status": {"const": "accepted"}, "job_id": INT,
                     "job_ids": {"type": "array", "items": INT, "minItems": 1}}),
    "Flagged": obj({"flagged": {"const": True}, "by": STR, "at": TIME, "verdict": nullable(ref("Verdict")),
                    "audit_id": INT, "notified": COUNT}),
    "AuditEntry": obj({"id": INT, "actor": STR, "action": STR, "target": nullable(STR), "details": ANY_OBJECT,
                       "at": TIME}),
    "Job": obj({"id": INT, "repo": STR, "handler": STR, "status": STR, "attempts": COUNT, "created_at": TIME,
                "started_at": nullable(TIME), "finished_at": nullable(TIME), "error": nullable(STR)}),
    "Notification": obj({"id": INT, "repo": nullable(STR), "kind": STR, "title": STR, "url": nullable(STR),
                         "data": ANY_OBJECT, "created_at": TIME, "read": BOOL, "read_at": nullable(TIME)}),
    "NotificationRead": obj({"id": INT, "read": {"const": True}}),
    "IssuePage": page_of("IssueSummary"),
    "RepoPage": page_of("RepoSummary"),
    "AuditPage": page_of("AuditEntry"),
    "NotificationPage": page_of("Notification"),
}

NAME = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,100}$"}
ID = {"type": "integer", "minimum": 1, "maximum": INT_MAX}


def path_param(name: str, schema: Schema, description: str, example: Any) -> Schema:
    """A required path parameter."""
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description,
            "example": example}


def query_param(name: str, schema: Schema, description: str) -> Schema:
    """An optional query parameter."""
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


REPO_PARAMS = [path_param("owner", NAME, "repository owner", "octo"),
               path_param("repo", NAME, "repository name", "widgets")]
NUMBER = path_param("number", ID, "issue or pull request number", 1)
PAGE_PARAMS = [
    query_param("page", {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": 1}, "page, from 1"),
    query_param("per_page", {"type": "integer", "minimum": 1, "maximum": PER_PAGE_MAX, "default": PER_PAGE_DEFAULT},
                "items per page"),
]
BEFORE = query_param("before", ID, "only items older than this id: pass the last id shown to read the next page "
                     "without repeats or gaps while new items arrive")
ERRORS = {
    "400": "a query or path value is malformed",
    "401": "not signed in",
    "403": "without push permission on the repository, or a cross-site request (code csrf)",
    "404": "not found, or not a repository you manage",
    "415": "a state change sent with a body that is not JSON (none is needed)",
    "502": "GitHub could not list your repositories (code github_unavailable); retry shortly",
    "503": "the database or the job runner is unavailable, or GitHub did not list your repositories in time (code "
           "github_timeout) or is rate-limiting your account (code github_rate_limited); Retry-After says when to "
           "retry, when known",
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying (GitHub's rate-limit reset, or a "
                                              "pause while GitHub is slow), when known",
                               "schema": {"type": "integer", "minimum": 1}}}


def operation(op_id: str, summary: str, ok: tuple[str, str], params: list[Schema], errors: str) -> Schema:
    """One operation: its 2xx response of component `ok[1]` and the error statuses listed in `errors`."""
    status, schema = ok
    responses: dict[str, Schema] = {status: {"description": summary,
                                             "content": {"application/json": {"schema": ref(schema)}}}}
    for code in errors.split():
        responses[code] = {"$ref": f"#/components/responses/E{code}"}
    return {"operationId": op_id, "summary": summary, "parameters": params, "responses": responses}


def build_paths() -> dict[str, Schema]:
    """Every endpoint of the API."""
    repo = "/api/repos/{owner}/{repo}"
    return {
        "/api/me": {"get": operation("getMe", "the signed-in user and counts", ("200", "Me"), [], "401 502 503")},
        "/api/repos": {"get": operation("listRepos", "repositories you manage", ("200", "RepoPage"), [
            *PAGE_PARAMS,
            query_param("after", {"type": "string", "minLength": 1, "maxLength": 141},
                        "only repositories named after this one (owner/name, ignoring case): pass the last one shown "
                        "to read the next page without repeats or gaps while repositories come and go")],
            "400 401 502 503")},
        repo: {"get": operation("getRepo", "installation, counts and code health", ("200", "Repo"),
                                REPO_PARAMS, "401 404 502 503")},
        f"{repo}/install": {"get": operation("getInstallUrl", "where to install or manage the App",
                                             ("200", "InstallUrl"), REPO_PARAMS, "401 404 502 503")},
        f"{repo}/issues": {"get": operation(
            "listIssues", "issues with checklists and their progress", ("200", "IssuePage"),
            [*REPO_PARAMS, *PAGE_PARAMS,
             query_param("before", ID, "only issues numbered below this: pass the last number shown to read the "
                         "next page without repeats or gaps while new ones arrive"),
             query_param("state", {"type": "string", "enum": ["open", "closed", "all"], "default": "open"},
                         "issue state")], "400 401 404 502 503")},
        f"{repo}/issues/{{number}}": {"get": operation("getIssue", "an issue's checklist", ("200", "Issue"),
                                                       [*REPO_PARAMS, NUMBER], "400 401 404 502 503")},
        f"{repo}/issues/{{number}}/regenerate": {"post": operation(
            "regenerateChecklist", "queue a rebuild of the checklist", ("202", "Accepted"),
            [*REPO_PARAMS, NUMBER], "400 401 403 404 415 502 503")},
        f"{repo}/prs/{{number}}": {"get": operation("getPull", "a pull request's manifest, verdict and health",
                                                    ("200", "Pull"), [*REPO_PARAMS, NUMBER], "400 401 404 502 503")},
        f"{repo}/prs/{{number}}/revalidate": {"post": operation(
            "revalidatePull", "queue a new manifest and verdict", ("202", "Accepted"),
            [*REPO_PARAMS, NUMBER], "400 401 403 404 415 502 503")},
        f"{repo}/prs/{{number}}/flag_for_merge": {"post": operation(
            "flagPullForMerge", "flag for merge (audited, managers notified)", ("200", "Flagged"),
            [*REPO_PARAMS, NUMBER], "400 401 403 404 415 502 503")},
        f"{repo}/audit": {"get": operation("listAudit", "the repository's audit log", ("200", "AuditPage"),
                                           [*REPO_PARAMS, *PAGE_PARAMS, BEFORE], "400 401 404 502 503")},
        "/api/jobs/{id}": {"get": operation("getJob", "a job on one of your repositories", ("200", "Job"),
                                            [path_param("id", ID, "job id", 1)], "400 401 404 502 503")},
        "/api/notifications": {"get": operation(
            "listNotifications", "your notifications, newest first", ("200", "NotificationPage"),
            [*PAGE_PARAMS, BEFORE, query_param("unread", {"type": "boolean"}, "only unread ones")], "400 401 502 503")},
        "/api/notifications/{id}/read": {"post": operation(
            "markNotificationRead", "mark a notification read", ("200", "NotificationRead"),
            [path_param("id", ID, "notification id", 1)], "400 401 403 404 415 502 503")},
        PATH: {"get": {"operationId": "getOpenApi", "summary": "this document", "security": [],
                       "responses": {"200": {"description": "the OpenAPI document",
                                             "content": {"application/json": {"schema": ANY_OBJECT}}}}}},
    }


def build_document() -> Schema:
    """The whole OpenAPI 3.1 document."""
    error_body = {"application/json": {"schema": ref("Error")}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "QuantumReview dashboard API", "version": "1",
                 "description": "Errors are always {\"error\": {\"code\", \"message\"}}."},
        "servers": [{"url": "/"}],
        "security": [{"session": []}],
        "paths": build_paths(),
        "components": {
            "schemas": SCHEMAS,
            "responses": {f"E{code}": {"description": text, "content": error_body,
                                       **({"headers": RETRY_AFTER} if code == "503" else {})}
                          for code, text in ERRORS.items()},
            "securitySchemes": {"session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE}},
        },
    }


@routes.get(PATH)
async def get_openapi(request: web.Request) -> web.Response:
    """Serve the document."""
    return web.json_response(build_document())
