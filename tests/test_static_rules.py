"""Static rules over the source: no task is created and then forgotten (RELIABILITY JOB-14); nothing but the
transaction's own connection is awaited inside a database transaction (DB-06).

asyncio keeps only a weak reference to a task; one whose result is dropped can be collected mid-flight, and
its exception is never seen. Every create_task / ensure_future result must be kept (a variable, a set with a
done-callback, a list) or the task created inside a TaskGroup, whose `create_task` result may be dropped.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("quantumreview", "handlers", "storage")
SPAWNERS = {"create_task", "ensure_future"}


def dropped_tasks(source: str, filename: str) -> list[str]:
    """`file:line` of every create_task/ensure_future call used as a bare statement (its task dropped),
    except on a name bound by `async with asyncio.TaskGroup() as name` (the group keeps its tasks)."""
    tree = ast.parse(source, filename)
    groups = {item.optional_vars.id for node in ast.walk(tree) if isinstance(node, ast.AsyncWith)
              for item in node.items if isinstance(item.optional_vars, ast.Name)
              and isinstance(item.context_expr, ast.Call) and _name(item.context_expr.func) == "TaskGroup"}
    found = [f"{filename}:{line}" for line in _unread_task_names(tree, groups)]
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
            continue
        func = node.value.func
        if _name(func) not in SPAWNERS:
            continue
        owner = func.value if isinstance(func, ast.Attribute) else None
        if isinstance(owner, ast.Name) and owner.id in groups:
            continue
        found.append(f"{filename}:{node.lineno}")
    return found


def _unread_task_names(tree: ast.AST, groups: set[str]) -> list[int]:
    """Lines where `name = create_task(...)` binds a name that nothing in the function reads afterwards (the
    task is as good as dropped)."""
    lines = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        reads = {node.id for node in ast.walk(function)
                 if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
        for node in ast.walk(function):
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                    and isinstance(node.value, ast.Call) and _name(node.value.func) in SPAWNERS):
                continue
            owner = node.value.func.value if isinstance(node.value.func, ast.Attribute) else None
            if isinstance(owner, ast.Name) and owner.id in groups:
                continue
            if node.targets[0].id not in reads:
                lines.append(node.lineno)
    return lines


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def test_no_task_is_created_and_forgotten() -> None:
    files = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    assert len(files) > 50  # the rule really looked at the code
    dropped = [hit for path in files for hit in dropped_tasks(path.read_text(), str(path.relative_to(ROOT)))]
    assert dropped == []


@pytest.mark.parametrize(("source", "dropped"), [
    ("import asyncio\nasync def f():\n    asyncio.create_task(g())\n", 1),
    ("import asyncio\nasync def f(loop):\n    loop.create_task(g())\n    asyncio.ensure_future(g())\n", 2),
    ("import asyncio\nasync def f():\n    task = asyncio.create_task(g())\n    await task\n", 0),
    ("import asyncio\nasync def f(tasks):\n    tasks.add(asyncio.create_task(g()))\n", 0),
    ("import asyncio\nasync def f():\n    async with asyncio.TaskGroup() as tg:\n        tg.create_task(g())\n", 0),
    ("import asyncio\nasync def f():\n    task = asyncio.create_task(g())\n    return 1\n", 1),
    ("import asyncio\nasync def f(tasks):\n    task = asyncio.create_task(g())\n    tasks.add(task)\n", 0),
])
def test_the_rule_tells_a_dropped_task_from_a_kept_one(source: str, dropped: int) -> None:
    assert len(dropped_tasks(source, "example.py")) == dropped


# -- DB-06: the writer lock is held for the whole of `async with db.transaction() as conn`; awaiting GitHub (or
# anything slow) there would stall every delivery behind it. Inside, only calls on `conn` or taking `conn` first.

def awaits_in_transactions(source: str, filename: str) -> tuple[int, list[str]]:
    """(transaction blocks seen, `file:line` of every await inside one that is not on its connection)."""
    tree = ast.parse(source, filename)
    blocks, found = 0, []
    for node in ast.walk(tree):
        if not isinstance(node, ast.AsyncWith):
            continue
        conns = [item.optional_vars.id for item in node.items
                 if isinstance(item.context_expr, ast.Call) and _name(item.context_expr.func) == "transaction"
                 and isinstance(item.optional_vars, ast.Name)]
        if not conns:
            continue
        blocks += 1
        for sub in (inner for stmt in node.body for inner in ast.walk(stmt)):
            if isinstance(sub, ast.AsyncFor | ast.AsyncWith) or (
                    isinstance(sub, ast.Await) and not _on_connection(sub.value, conns[0])):
                found.append(f"{filename}:{sub.lineno}")
    return blocks, found


def _on_connection(call: ast.expr, conn: str) -> bool:
    if not isinstance(call, ast.Call):
        return False
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == conn:
        return True
    return bool(call.args) and isinstance(call.args[0], ast.Name) and call.args[0].id == conn


def test_nothing_but_the_connection_is_awaited_inside_a_transaction() -> None:
    files = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    results = [awaits_in_transactions(path.read_text(), str(path.relative_to(ROOT))) for path in files]
    assert sum(blocks for blocks, _ in results) >= 20  # the rule really found the transactions
    assert [hit for _, hits in results for hit in hits] == []


def test_storage_never_imports_an_http_client() -> None:
    # Why: storage functions are what transactions call with `conn`; they must not reach the network either.
    for path in sorted((ROOT / "storage").rglob("*.py")):
        imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.Import) for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, ast.ImportFrom)}
        assert not imported & {"aiohttp", "gidgethub", "urllib", "http", "socket"}, path


TRANSACTION = "async def f(db, gh):\n    async with db.transaction() as conn:\n"


@pytest.mark.parametrize(("body", "flagged"), [
    ("        await conn.execute('x')\n        await store.insert(conn, 1)\n", 0),
    ("        await gh.getitem('/x')\n", 1),
    ("        await asyncio.sleep(1)\n        await store.insert(1, conn)\n", 2),
    ("        async for row in gh.getiter('/x'):\n            pass\n", 1),
    # Conservative: a cursor's own await is flagged too (the code uses conn.execute_fetchall instead).
    ("        rows = [await conn.execute(q) for q in qs]\n        x = await (await conn.execute('y')).fetchall()\n", 1),
])
def test_the_transaction_rule_flags_what_it_should(body: str, flagged: int) -> None:
    blocks, found = awaits_in_transactions(TRANSACTION + body, "sample.py")
    assert blocks == 1 and len(found) == flagged


def unencodable_docstrings(source: str, filename: str) -> list[str]:
    """Docstrings holding a lone surrogate (a '\\ud800' escape in a non-raw docstring)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                try:
                    doc.encode("utf-8")
                except UnicodeEncodeError:
                    found.append(f"{filename}:{getattr(node, 'lineno', 1)}")
    return found


def test_no_docstring_holds_a_lone_surrogate() -> None:
    """Python 3.13 (the Docker image's) cannot compile such a module: its docstring clean-up encodes to UTF-8, so
    `import storage.db` raised UnicodeEncodeError and the image's server never started. Python 3.11 compiles it."""
    files = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    found = [hit for path in files for hit in unencodable_docstrings(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == []
    assert unencodable_docstrings('def f():\n    """a \\ud800 b"""\n', "x.py") == ["x.py:1"]
    assert unencodable_docstrings('PATTERN = "[\\ud800-\\udfff]"\n', "x.py") == []  # a plain string compiles
