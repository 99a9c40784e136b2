"""Where files belong: classify a changed path (source, test, docs, config, CI) and place a suggested test.

Conventions of Python, JavaScript/TypeScript, Go, Java/Kotlin, Rust and Ruby.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from typing import Literal, get_args

FileClass = Literal["source", "test", "docs", "config", "ci"]
FILE_CLASSES: tuple[FileClass, ...] = get_args(FileClass)

_CI_DIRS = (".github/workflows/", ".github/actions/", ".circleci/", ".buildkite/", ".gitlab/ci/")
_CI_NAMES = frozenset(
    {".gitlab-ci.yml", "jenkinsfile", ".travis.yml", "azure-pipelines.yml", "bitbucket-pipelines.yml", ".drone.yml",
     "appveyor.yml", ".gitlab-ci.yaml"}
)  # fmt: skip
_DOC_EXTS = frozenset({".md", ".markdown", ".rst", ".adoc", ".asciidoc"})
_DOC_NAMES = frozenset({"readme", "changelog", "changes", "license", "licence", "authors", "contributing", "notice",
                        "copying", "history", "code_of_conduct", "security"})  # fmt: skip
_DOC_DIRS = frozenset({"docs", "doc", "documentation"})
_TEST_DIRS = frozenset({"tests", "test", "__tests__", "spec", "specs", "testdata", "__mocks__", "e2e"})
_TEST_NAME = re.compile(
    r"test_.+\.py|.+_test\.py|conftest\.py"
    r"|.+\.(?:test|spec)\.[cm]?[jt]sx?"
    r"|.+_test\.go"
    r"|.+(?:Tests?|[a-z0-9]IT|ITCase|Spec)\.(?:java|kt|kts|scala|groovy|cs)"
    r"|.+_spec\.rb|.+_test\.rb|test_.+\.rb"
    r"|.+Test\.php|.+_test\.(?:exs|dart|c|cc|cpp)|test_.+\.(?:c|cc|cpp)"
)
_CONFIG_NAMES = frozenset(
    {"pyproject.toml", "setup.cfg", "setup.py", "package.json", "dockerfile", "makefile", "pipfile", "gemfile",
     "go.mod", "go.sum", "pom.xml", "build.gradle", "build.gradle.kts", "settings.gradle", "settings.gradle.kts",
     "gradle.properties", "codeowners", "procfile", "rakefile", "justfile", "containerfile", "manifest.in"}
)  # fmt: skip
_CONFIG_EXTS = frozenset({".yml", ".yaml", ".toml", ".ini", ".cfg", ".json", ".conf", ".properties", ".lock"})
_LOCK_NAME = re.compile(r".+[-.]lock\.(?:json|ya?ml)|.+\.lock|requirements.*\.txt|dockerfile\..+|.+\.dockerfile")


def classify_file(path: str) -> FileClass:
    """Classify a repository path as source, test, docs, config or CI by common language conventions."""
    path = path.replace("\\", "/").removeprefix("./")
    lower = path.lower()
    base = posixpath.basename(path)
    lower_base = base.lower()
    dirs = lower.split("/")[:-1]
    stem, ext = posixpath.splitext(lower_base)
    if lower.startswith(_CI_DIRS) or lower_base in _CI_NAMES:
        return "ci"
    if ext in _DOC_EXTS or (stem in _DOC_NAMES and ext in ("", ".txt")):
        return "docs"
    if _TEST_NAME.fullmatch(base) or any(part in _TEST_DIRS for part in dirs):
        return "test"
    if any(part in _DOC_DIRS for part in dirs):
        return "docs"
    if lower_base in _CONFIG_NAMES or ext in _CONFIG_EXTS or _LOCK_NAME.fullmatch(lower_base):
        return "config"
    if lower_base.startswith(".") and "." not in lower_base[1:].rstrip("."):
        return "config"  # dotfiles such as .gitignore, .eslintrc, .npmrc
    return "source"


def suggest_test_path(source: str, tests: Sequence[str]) -> str:
    """Return where a test for a source file goes, following the test files seen in the diff."""
    language = language_of(source)
    same = [path for path in tests if language_of(path) == language]
    directory, base = posixpath.split(source)
    stem, ext = posixpath.splitext(base)
    if language == "go":
        return posixpath.join(directory, f"{stem}_test.go")
    if language == "python":
        return _python_test_path(directory, stem, same)
    if language == "js":
        return _js_test_path(directory, stem, ext, same)
    if language == "jvm":
        return _jvm_test_path(directory, stem, ext, same)
    if language == "ruby":
        return _ruby_test_path(directory, stem, same)
    if language == "rust":
        parts = directory.split("/")
        crate = "/".join(parts[: len(parts) - 1 - parts[::-1].index("src")]) if "src" in parts else ""
        return posixpath.join(crate, "tests", f"{stem}.rs")
    return posixpath.join("tests", f"test_{base}")


def _python_test_path(directory: str, stem: str, tests: Sequence[str]) -> str:
    if stem == "__init__":
        stem = posixpath.basename(directory) or "package"
    names = [posixpath.basename(path) for path in tests if posixpath.basename(path) != "conftest.py"]
    suffix = sum(name.endswith("_test.py") for name in names) > len(names) / 2
    filename = f"{stem}_test.py" if suffix else f"test_{stem}.py"
    nearest = _nearest(directory, [path for path in tests if posixpath.basename(path) != "conftest.py"])
    if nearest is None:
        return posixpath.join("tests", filename)
    if _in_test_dir(nearest):
        return posixpath.join(posixpath.dirname(nearest), filename)
    return posixpath.join(directory, filename)


def _js_test_path(directory: str, stem: str, ext: str, tests: Sequence[str]) -> str:
    spec = sum(".spec." in posixpath.basename(path) for path in tests) > len(tests) / 2
    filename = f"{stem}.{'spec' if spec else 'test'}{ext}"
    nearest = _nearest(directory, tests)
    if nearest is None:
        return posixpath.join(directory, filename)
    if "__tests__" in nearest.split("/"):
        return posixpath.join(directory, "__tests__", filename)
    if _in_test_dir(nearest):
        return posixpath.join(posixpath.dirname(nearest), filename)
    return posixpath.join(directory, filename)


def _jvm_test_path(directory: str, stem: str, ext: str, tests: Sequence[str]) -> str:
    plural = sum(posixpath.splitext(path)[0].endswith("Tests") for path in tests) > len(tests) / 2
    filename = f"{stem}{'Tests' if plural else 'Test'}{ext}"
    parts = directory.split("/")
    if "main" in parts:
        parts[parts.index("main")] = "test"
        return posixpath.join("/".join(parts), filename)
    nearest = _nearest(directory, tests)
    return posixpath.join(posixpath.dirname(nearest) if nearest else directory, filename)


def _ruby_test_path(directory: str, stem: str, tests: Sequence[str]) -> str:
    minitest = sum(path.split("/")[0] == "test" for path in tests) > sum(path.split("/")[0] == "spec" for path in tests)
    parts = directory.split("/")
    if parts and parts[0] in ("app", "lib"):
        parts = parts[1:]
    root, suffix = ("test", "_test.rb") if minitest else ("spec", "_spec.rb")
    return posixpath.join(root, *parts, f"{stem}{suffix}")


def _nearest(directory: str, tests: Sequence[str]) -> str | None:
    """Return the test file whose directory shares the longest leading path with `directory`."""
    if not tests:
        return None
    own = directory.split("/")

    def shared(path: str) -> int:
        count = 0
        for mine, theirs in zip(own, path.split("/")[:-1], strict=False):
            if mine != theirs:
                break
            count += 1
        return count

    return max(tests, key=shared)


def _in_test_dir(path: str) -> bool:
    return any(part.lower() in _TEST_DIRS for part in path.split("/")[:-1])


def language_of(path: str) -> str | None:
    ext = posixpath.splitext(path)[1].lower()
    return _LANGUAGES.get(ext)


_LANGUAGES = {
    ".py": "python", ".js": "js", ".jsx": "js", ".ts": "js", ".tsx": "js", ".mjs": "js", ".cjs": "js",
    ".go": "go", ".java": "jvm", ".kt": "jvm", ".scala": "jvm", ".groovy": "jvm", ".rb": "ruby", ".rs": "rust",
}  # fmt: skip
