"""docs/contract.md against the contract's types (doorman.contract): every field a table documents
exists in its TypedDict, and every field of every record type (nested ones included) is documented,
as a row of its own or named in the meaning of the row that holds it."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

from doorman.contract.alert import Alert
from doorman.contract.delivery import Delivery
from doorman.contract.snapshot import Queue, Snapshot
from doorman.contract.tasks import Counts, Hist, Series, Tasks
from doorman.contract.tick import Tick

DOC = Path(__file__).resolve().parent.parent / "docs" / "contract.md"

# (section heading, index of the field table in that section) -> the record type it documents
TABLES: dict[tuple[str, int], type] = {
    ("Snapshot", 0): Snapshot, ("Snapshot", 1): Queue,
    ("Tasks", 0): Tasks, ("Tasks", 1): Counts, ("Tasks", 2): Series, ("Tasks", 3): Hist,
    ("Alert", 0): Alert, ("Tick", 0): Tick,
    ("Delivery record", 0): Delivery, ("Dry-run record", 0): Delivery,
}
ROOTS = set(TABLES.values())
Rows = dict[str, str]  # field path -> its meaning


def tables() -> dict[type, Rows]:
    """The rows of every field table, by the record type it documents."""
    out: dict[type, Rows] = {}
    section, index, in_table = "", -1, False
    for line in DOC.read_text().splitlines():
        heading = re.match(r"#{2,3} (.+)", line)
        if heading:
            section, index, in_table = heading.group(1).strip(), -1, False
            continue
        if line.startswith("| field |"):
            index, in_table = index + 1, True
            assert (section, index) in TABLES, f"a field table in {section!r} that this test does not know"
            out.setdefault(TABLES[section, index], {})
            continue
        if not line.startswith("|"):
            in_table = False
            continue
        if in_table and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            for name in re.findall(r"`([^`]+)`", cells[0]):
                out[TABLES[section, index]][name] = cells[-1]
    return out


def unwrap(t: object) -> object:
    """The record type inside NotRequired[...], X | None, list[X] and dict[str, X]."""
    while True:
        origin = typing.get_origin(t)
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if origin in (typing.Union, types.UnionType) and len(args) == 1:
            t = args[0]
        elif origin is list and args:
            t = args[0]
        elif origin is dict and len(args) == 2:
            t = args[1]
        else:
            return t


def is_record(t: object) -> bool:
    return isinstance(t, type) and typing.is_typeddict(t)


def fields(td: type) -> dict[str, object]:
    return typing.get_type_hints(td)


def resolve(root: type, path: str) -> bool:
    """Whether `path` (`workers[].name`, `queues.<name>.oldest`, `by_name.<name>`) is a field of `root`."""
    t: object = root
    for part in path.split("."):
        part = part.removesuffix("[]")
        if part.startswith("<"):  # a key of a free map: the map's value type is already unwrapped
            continue
        if not is_record(t) or part not in fields(t):  # type: ignore[arg-type]
            return False
        t = unwrap(fields(t)[part])  # type: ignore[arg-type]
    return True


def backticked(text: str) -> set[str]:
    return {m.split(":")[0].strip() for m in re.findall(r"`([^`]+)`", text)}


def undocumented(td: type, rows: Rows, path: str = "", context: str = "") -> list[str]:
    """Fields of `td` (at `path`) that have no row and are not named in `context` (the meaning of
    the row that holds them, or of an enclosing one)."""
    missing = []
    for name, hint in fields(td).items():
        full = f"{path}{name}"
        row = next((rows[k] for k in rows if k.replace("[]", "") == full), None)
        if row is None and name not in backticked(context):
            missing.append(full)
        inner = unwrap(hint)
        if is_record(inner) and inner not in ROOTS:
            missing += undocumented(inner, rows, full + ".", (row or "") + " " + context)  # type: ignore[arg-type]
    return missing


def test_every_documented_field_is_in_its_type():
    wrong = [f"{td.__name__}: {path}" for td, rows in tables().items() for path in rows
             if not resolve(td, path)]
    assert not wrong, f"docs/contract.md documents fields the types lack: {wrong}"


def test_every_field_of_every_record_is_documented():
    docs = tables()
    assert set(docs) == ROOTS
    missing = [f"{td.__name__}: {m}" for td, rows in docs.items() for m in undocumented(td, rows)]
    assert not missing, f"fields of the contract's types missing from docs/contract.md: {missing}"


def test_the_check_finds_a_field_the_docs_lack():
    """The test can fail: a field only the type has is reported."""

    class Extra(typing.TypedDict):
        name: str
        secret_new_field: int

    assert undocumented(Extra, {"name": "the name"}) == ["secret_new_field"]
    assert not resolve(Extra, "no_such_field")
