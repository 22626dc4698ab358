"""``score --dask SCHEDULER``: the ``score`` command on a Dask cluster (``dask`` extra).

DATA is a folder of Parquet files, a glob of CSV (or Parquet) files, or one file; each
file is one partition, read on a worker with the same readers a single-process ``score``
uses, so that text columns, delimiters and empty cells parse the same. The rows are
scored with :func:`aae_anomaly.dask.score_partitions`. OUTPUT is a folder of Parquet files
(``part.00000.parquet``, ... in DATA's order), written by the workers into a temporary
folder beside it that is renamed to OUTPUT at the end, or a ``.csv`` file (or ``-``)
assembled on this machine and written atomically. See ``docs/dask.md``.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import click

from .._version import __version__
from ..errors import MissingDependencyError
from ..io.atomic import atomic_path
from ..io.tables import (
    STDOUT,
    ReadOptions,
    read_csv_table,
    read_parquet_table,
    sniff_delimiter,
    write_table,
)
from .app import BadInput

SUFFIXES = (".csv", ".parquet")
# how long to wait for a scheduler address to answer, and for a first worker
CONNECT_TIMEOUT_S = 20


def dask_option():
    return click.option(
        "--dask",
        "dask_scheduler",
        metavar="SCHEDULER",
        help="Score on a Dask cluster: a scheduler address (tcp://host:port) or local:N "
        "(N worker processes on this machine). DATA is then a folder of .parquet files or "
        "a glob of .csv files, one partition each, and OUTPUT a folder of Parquet files "
        "or a .csv file; paths must be the same on every worker. Needs the dask extra.",
    )


def score_on_dask(
    scheduler: str, model: str, data: str, output: str, *, label_column, classes_column,
    id_columns, drop_columns, read_options: ReadOptions, device: str,
) -> None:
    """Score DATA's files with MODEL on the cluster ``scheduler`` and write OUTPUT; the
    scores are those a single-process ``score`` of the same rows gives."""
    to_csv = output == STDOUT or Path(output).suffix.lower() == ".csv"
    if not to_csv and Path(output).suffix.lower() == ".npy":
        raise ValueError(f"{output}: with --dask, OUTPUT is a folder of Parquet files or a .csv")
    _check_output(output, to_csv)
    files = partition_files(data)
    columns = _columns(files[0], read_options)
    for name, option in [
        *((n, "--id-column") for n in id_columns),
        *((n, "--drop-column") for n in drop_columns),
        *((n, option) for n, option in ((label_column, "--label-column"),
                                         (classes_column, "--classes-column")) if n),
    ]:
        if name not in columns:
            raise ValueError(
                f"{files[0]} has no column {name!r} ({option}); columns: {', '.join(columns)}"
            )
    try:
        import dask
        import dask.dataframe

        from .. import dask as aae_dask
    except ImportError:
        raise MissingDependencyError(
            "--dask needs dask and distributed: pip install 'aae-anomaly[dask]'"
        ) from None
    dropped = [*drop_columns, *([label_column] if label_column else [])]
    # dask would turn text columns into its own string type; the rows go to the model as
    # the single-process reader gives them
    with dask.config.set({"dataframe.convert-string": False}):
        rows = dask.dataframe.from_map(
            read_partition, list(range(len(files))), [str(f) for f in files],
            args=(len(files), read_options, columns), meta=_meta(columns),
            label="read-partition", enforce_metadata=False,
        )
        # the model is loaded and checked here, before a cluster is started or reached
        scores = aae_dask.score_partitions(
            model, rows, id_columns=id_columns, classes_column=classes_column,
            drop_columns=dropped, device=device,
        )
        parts = scores.to_delayed()
        with connect(scheduler) as client:
            if to_csv:
                _write_csv(client, parts, output)
            else:
                _write_parquet_folder(client, dask, parts, Path(output))


# -- DATA --------------------------------------------------------------------------------------
def partition_files(data: str) -> list[Path]:
    """DATA's files, one partition each, in their names' natural order (``part.2`` before
    ``part.10``), as absolute paths (the workers may run elsewhere)."""
    path = Path(data)
    if path.is_dir():
        # what writers leave beside the data (_SUCCESS, _metadata, .crc files) is skipped
        found = [p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file()
                 and not p.name.startswith((".", "_"))]
        if not found:
            raise ValueError(f"{data} is a folder without .parquet or .csv files")
    elif glob.has_magic(data):
        found = [Path(p) for p in glob.glob(data) if Path(p).is_file()]
        if not found:
            raise FileNotFoundError(f"no files match {data}")
    elif path.is_file():
        found = [path]
    else:
        raise FileNotFoundError(f"no such file or folder: {data}")
    kinds = {p.suffix.lower() for p in found}
    if not kinds <= set(SUFFIXES) or len(kinds) > 1:
        shown = ", ".join(sorted(k or "(no suffix)" for k in kinds))
        raise ValueError(
            f"{data}: with --dask, DATA's files are all .csv or all .parquet, not {shown}"
        )
    return sorted((p.absolute() for p in found), key=_natural)


def _natural(path: Path) -> list:
    return [int(piece) if piece.isdigit() else piece for piece in re.split(r"(\d+)", str(path))]


def _columns(file: Path, options: ReadOptions) -> list[str]:
    """The column names of DATA's first file (its header line, or its Parquet schema),
    read without its rows."""
    if file.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet

            schema = pyarrow.parquet.read_schema(file)
        except ImportError:
            raise MissingDependencyError(
                "parquet files need pyarrow: pip install 'aae-anomaly[parquet]'"
            ) from None
        except Exception as exc:  # pyarrow raises many types for a damaged file
            raise ValueError(f"{file} is not a readable parquet file: {exc}") from None
        return [str(c) for c in schema.empty_table().to_pandas().columns]
    encoding = options.encoding
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # a byte-order mark is dropped, as when the file is read
    with file.open("rb") as handle:
        head = handle.read(1 << 16).decode(encoding, errors="replace")
    delimiter = options.delimiter or sniff_delimiter(head)
    header = next(csv.reader(head.splitlines()[:1], delimiter=delimiter), [])
    return [name.strip() for name in header]


def _meta(columns: list[str]):
    import pandas

    # the dtypes are the rows' own when read; the score table takes its keys from them
    return pandas.DataFrame({name: pandas.Series([], dtype=object) for name in columns})


def read_partition(number: int, path: str, count: int, options: ReadOptions, expected):
    """Partition ``number`` (of ``count``, from 0): the rows of file ``path``, read as a
    single-process ``score`` reads them. A file that cannot be read, or whose columns are
    not those ``expected`` (the first file's), is a ValueError naming it. (A parameter
    named ``columns`` would receive dask's column projection.)"""
    try:
        if path.lower().endswith(".parquet"):
            frame = read_parquet_table(path)
        else:
            frame = read_csv_table(
                path, options.delimiter or "", options.decimal or "", options.encoding,
                options.thousands or "",
            )
    except (ValueError, OSError) as exc:
        raise ValueError(f"partition {number} of {count} cannot be read: {exc}") from None
    found = [str(c) for c in frame.columns]
    if set(found) != set(expected):
        raise ValueError(
            f"partition {number} of {count}: {path} has the columns {', '.join(found)}; the "
            f"first file has {', '.join(expected)}"
        )
    return frame


# -- the cluster -------------------------------------------------------------------------------
@contextlib.contextmanager
def connect(scheduler: str) -> Iterator:
    """A ``distributed.Client`` of the cluster at ``scheduler``: ``local:N`` starts N worker
    processes on this machine (loopback only) for the block's duration, whose logs are
    silenced: this command reports what fails."""
    try:
        import distributed
    except ImportError:
        raise MissingDependencyError(
            "--dask needs dask and distributed: pip install 'aae-anomaly[dask]'"
        ) from None
    if scheduler.startswith("local:"):
        count = scheduler.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"--dask {scheduler}: local:N needs a number of workers N >= 1")
        import dask

        # distributed has its workers return freed memory to the system at 64 KiB, which
        # made scoring about 25% slower here (docs/dask.md); glibc's default keeps freed
        # blocks for the next batch
        untrimmed = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
        with dask.config.set(untrimmed), distributed.LocalCluster(
            n_workers=int(count), threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=logging.CRITICAL,
        ) as cluster, distributed.Client(cluster, set_as_default=False) as client:
            yield client
        return
    if "://" not in scheduler:
        raise ValueError(
            f"--dask {scheduler}: expected a scheduler address such as tcp://host:8786, "
            "or local:N"
        )
    with distributed.Client(
        scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False
    ) as client:
        _check_workers(client, scheduler)
        yield client


def _check_workers(client, scheduler: str) -> None:
    """Fail now, clearly, rather than in every task, when the workers lack aae-anomaly;
    warn when theirs is another version than this one (whose scores a model promises)."""
    try:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
    except TimeoutError:
        raise OSError(f"the Dask scheduler at {scheduler} has no workers") from None
    try:
        versions = client.run(_worker_version)
    except Exception as exc:  # whatever a worker raised unpickling or running it
        raise OSError(
            f"the Dask workers of {scheduler} cannot run aae-anomaly ({exc}); install "
            "aae-anomaly[dask] where they run"
        ) from None
    other = sorted({v for v in versions.values() if v != __version__})
    if other:
        warnings.warn(
            f"the Dask workers run aae-anomaly {', '.join(other)}, this process "
            f"{__version__}; scores match a single-process score of the workers' version",
            stacklevel=2,
        )


def _worker_version() -> str:
    return __version__


def _compute(client, tasks) -> list:
    """The results of ``tasks``, in order; a task's error is raised here (the rest are
    cancelled), and a worker that kept dying is named as the reason."""
    import distributed

    futures = client.compute(tasks)
    try:
        return client.gather(futures)
    except distributed.scheduler.KilledWorker as exc:
        raise BadInput(
            f"the workers died each of the {exc.allowed_failures + 1} times task "
            f"{exc.task!r} ran; see their logs (out of memory?); nothing was written"
        ) from None
    finally:
        client.cancel(futures)


# -- OUTPUT ------------------------------------------------------------------------------------
def _check_output(output: str, to_csv: bool) -> None:
    if output == STDOUT:
        return
    path = Path(output)
    if not path.absolute().parent.is_dir():
        raise FileNotFoundError(f"no such directory: {path.parent} (for {output})")
    if not os.access(path.absolute().parent, os.W_OK):
        raise PermissionError(f"cannot write in {path.parent} (for {output})")
    if to_csv and path.is_dir():
        raise ValueError(f"{output} is a directory; give a file name to write")
    if not to_csv and path.exists() and not path.is_dir():
        raise ValueError(f"{output} is a file; with --dask, OUTPUT is a folder of Parquet files")
    if not to_csv and path.is_dir() and any(path.iterdir()):
        raise ValueError(f"{output} is a folder with files in it; remove it or give a new one")


def _write_csv(client, parts, output: str) -> None:
    """The partitions' score tables as one CSV, as a single-process ``score`` writes it;
    nothing is written unless every partition was scored."""
    import pandas

    whole = pandas.concat(_compute(client, parts), ignore_index=True)
    write_table({name: whole[name].to_numpy() for name in whole.columns}, output)


def _write_parquet_folder(client, dask, parts, folder: Path) -> None:
    """Each partition's score table as ``part.N.parquet`` in a temporary folder beside
    ``folder``, written by the workers; renamed to ``folder`` once all are there."""
    folder = folder.absolute()
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o777 & ~umask)  # mkdtemp's folder is its owner's only
        width = max(5, len(str(len(parts) - 1)))
        names = [str(temporary / f"part.{i:0{width}d}.parquet") for i in range(len(parts))]
        writes = [
            dask.delayed(write_part, pure=True)(part, name)
            for part, name in zip(parts, names, strict=True)
        ]
        _compute(client, writes)
        if folder.is_dir():
            folder.rmdir()  # empty (checked before); a folder is renamed over no other
        os.replace(temporary, folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def write_part(frame, path: str) -> int:
    """One partition's score table as a Parquet file, as a single-process ``score`` writes
    one; atomic, so that a retried partition replaces it whole."""
    with atomic_path(path) as temporary:
        frame.to_parquet(temporary, index=False)
    return len(frame)
