"""English prose that ships with every Python: standard-library docstrings, in a fixed order.

Text-like benchmark prompts (bench) and natural-text haystacks (eval) both need it offline.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any

# Prose-heavy modules, importable without side effects. Missing ones (no sqlite3, ...) are skipped.
CORPUS_MODULES = (
    "os", "re", "json", "collections", "functools", "itertools", "argparse", "logging",
    "subprocess", "threading", "asyncio", "email.message", "http.client", "urllib.request",
    "unittest", "typing", "dataclasses", "pathlib", "datetime", "decimal", "fractions",
    "statistics", "random", "textwrap", "string", "csv", "sqlite3", "xml.etree.ElementTree",
    "zipfile", "tarfile", "shutil", "tempfile", "socket", "heapq", "bisect", "contextlib",
    "inspect", "pydoc", "difflib", "pickle", "copy", "enum", "abc", "io", "codecs", "calendar",
    "gettext", "configparser", "queue", "sched", "selectors", "signal", "struct", "base64",
    "hashlib", "hmac", "secrets", "uuid", "ipaddress", "html.parser", "mailbox", "smtplib",
    "ftplib", "imaplib", "poplib", "doctest", "trace", "timeit", "pstats", "tokenize", "ast",
    "dis", "types", "weakref", "operator", "numbers", "array", "glob", "fnmatch", "filecmp",
    "plistlib", "shlex", "optparse", "getopt", "locale", "concurrent.futures", "gzip", "bz2",
    "lzma", "wave", "colorsys", "mimetypes",
)  # fmt: skip

@functools.lru_cache(maxsize=1)
def corpus_paragraphs() -> tuple[str, ...]:
    """Docstrings of `CORPUS_MODULES`, their public classes, functions and methods, in a fixed order."""
    paragraphs: list[str] = []
    for module_name in CORPUS_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        paragraphs += _module_docstrings(module)
    return tuple(paragraphs)


def _module_docstrings(module: Any) -> list[str]:
    found = [inspect.getdoc(module)]
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            found.append(inspect.getdoc(obj))
        elif inspect.isclass(obj):
            found.append(inspect.getdoc(obj))
            found += [
                inspect.getdoc(member)
                for member_name, member in sorted(vars(obj).items())
                if not member_name.startswith("_") and inspect.isfunction(member)
            ]
    return [doc for doc in found if doc]
