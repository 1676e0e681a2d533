"""The group (patient, slide, culture) of every image of a folder: data set, from `--group-by`.

Images of one group are alike; a split that puts one group on both sides scores a model on what it
has already seen. The setting is a regular expression matched against each file's name (against
its path relative to the data folder when the pattern holds a '/'), whose first capture group or
else whole match names the group, or `csv:PATH`, a table with the columns file and group.
"""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path, PurePosixPath

from cnnlab.data.dataset import ImageDataset
from cnnlab.errors import ConfigError, DataError

CSV_PREFIX = "csv:"
SHOWN = 5  # files named in an error before "and N more"


def resolve_groups(group_by: str, dataset: ImageDataset) -> dict[str, list[str]]:
    """The group name of every file of the data set, per part (train, val, test), in the order of
    dataset.files; a file that no rule names is a DataError listing the first few."""
    if dataset.files is None:
        raise ConfigError(
            f"--group-by applies to folder: data sets, whose file names carry the groups; "
            f"{dataset.name!r} has no files. Leave --group-by out for this data set."
        )
    if not group_by or not group_by.strip():
        raise ConfigError("--group-by is empty: give a regular expression or csv:PATH.")
    if group_by.startswith(CSV_PREFIX):
        table = read_group_table(group_by[len(CSV_PREFIX) :], dataset.location)
        named = {name for files in dataset.files.values() for name in files}
        if extra := sorted(set(table) - named):
            warnings.warn(
                f"{group_by}: {len(extra)} row(s) name no image read from the folder: "
                f"{_shown(extra)} (a typo, a moved file, or an image skipped as unreadable).",
                stacklevel=2,
            )
        return {part: _from_table(table, files, group_by) for part, files in dataset.files.items()}
    pattern = _compile(group_by)
    return {part: _from_pattern(pattern, files, group_by) for part, files in dataset.files.items()}


def _compile(group_by: str) -> re.Pattern:
    try:
        return re.compile(group_by)
    except re.error as error:
        raise ConfigError(
            f"--group-by {group_by!r} is not a valid regular expression ({error}). Give one such "
            "as '^[^_]+' (the file name up to the first underscore), or csv:PATH."
        ) from None


def group_of(pattern: re.Pattern, relative_path: str) -> str | None:
    """The group a pattern names in a file's path, or None when it does not match."""
    text = relative_path if "/" in pattern.pattern else PurePosixPath(relative_path).name
    found = pattern.search(text)
    if found is None:
        return None
    named = found.group(1) if pattern.groups and found.group(1) is not None else found.group(0)
    return named or None


def _from_pattern(pattern: re.Pattern, files: list[str], group_by: str) -> list[str]:
    groups = [group_of(pattern, name) for name in files]
    unmatched = [name for name, group in zip(files, groups, strict=True) if group is None]
    if unmatched:
        raise DataError(
            f"--group-by {group_by!r} names no group in {len(unmatched)} file(s): "
            f"{_shown(unmatched)}. Change the pattern so that it matches every file name (a "
            "pattern with a '/' is matched against the path), or give csv:PATH."
        )
    return groups  # type: ignore[return-value]


def read_group_table(path: str, root: str) -> dict[str, str]:
    """{path relative to root: group} from a CSV with columns file and group."""
    table_path = Path(path).expanduser()
    try:
        with open(table_path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
            columns = set(rows[0]) if rows else set()
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"--group-by csv:{path}: cannot read the file ({error}).") from None
    if not {"file", "group"} <= columns:
        raise DataError(
            f"--group-by csv:{path} needs a header row with the columns file and group "
            f"(found: {', '.join(sorted(c for c in columns if c)) or 'no rows'})."
        )
    base = Path(root).resolve()
    table = {}
    for row in rows:
        name, group = (row.get("file") or "").strip(), (row.get("group") or "").strip()
        if not name or not group:
            continue
        file_path = Path(name).expanduser()
        if file_path.is_absolute():
            try:
                name = file_path.resolve().relative_to(base).as_posix()
            except ValueError:
                continue  # a file outside the data folder names no image of it
        table[PurePosixPath(name).as_posix()] = group
    return table


def _from_table(table: dict[str, str], files: list[str], group_by: str) -> list[str]:
    missing = [name for name in files if name not in table]
    if missing:
        raise DataError(
            f"{group_by}: {len(missing)} image file(s) have no row: {_shown(missing)}. Add a row "
            "'file,group' for each (file relative to the data folder, or absolute)."
        )
    return [table[name] for name in files]


def _shown(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more
