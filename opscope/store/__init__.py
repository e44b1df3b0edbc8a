"""The measurement store: SQLite (WAL, versioned schema) on disk, pandas/Parquet/CSV out."""

from opscope.store.frame import COLUMNS, export, load_dataframe
from opscope.store.record import STATUSES, Record
from opscope.store.schema import SCHEMA_VERSION
from opscope.store.sqlite import Store, open_store

__all__ = ["COLUMNS", "SCHEMA_VERSION", "STATUSES", "Record", "Store", "export", "load_dataframe", "open_store"]
