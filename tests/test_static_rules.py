"""Static rules over the source (RELIABILITY JOB-14): no task is created and then forgotten.

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
    found = []
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
])
def test_the_rule_tells_a_dropped_task_from_a_kept_one(source: str, dropped: int) -> None:
    assert len(dropped_tasks(source, "example.py")) == dropped
