"""Where asset values are kept: a local folder, or any fsspec URL such as `s3://bucket/prefix`.

In production every step may run in a container of its own whose disk does not last, so asset values
go to an object store every step can reach (`AC_PIPELINE_ASSETS=s3://bucket/prefix`). A reader must
never see half a value: in a folder a value is written to a temporary name and renamed; in an object
store it is serialised completely to a local temporary file first and then uploaded in one call, which
S3 (and GCS, Azure) publishes only once the whole object has arrived. (An fsspec filesystem that is not an
object store, such as sftp://, is only as atomic as its own upload.)

Why fsspec with s3fs rather than Polars' own cloud I/O:
- one code path for any fsspec URL (s3, gs, az, memory, ...), where Polars' native I/O knows a fixed few;
- atomicity stays in our hands and is tested here: serialisation finishes before anything is sent, then
  s3fs sends one PUT (or, for a large file, a multipart upload it aborts on error). Polars' sink streams
  while it serialises, and what it does with a half-sent upload when serialisation fails is its own detail;
  likewise s3fs's `fs.open(path, "wb")`, which publishes what it has on `close()` even after an error;
- s3fs turns S3's error codes into OSError subclasses with botocore's error as the cause, so a missing
  bucket, refused credentials and an unreachable endpoint each get a message that says what to do;
- credentials come from botocore's standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, config files,
  container and instance roles), as for every AWS tool; this module never reads or prints a secret.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

# fsspec ships no type information (pyproject.toml's mypy overrides are another change's to make).
import fsspec  # type: ignore[import-untyped]
import polars as pl
from fsspec.spec import AbstractFileSystem  # type: ignore[import-untyped]

from ac_pipeline.settings import redact

LOCAL_PROTOCOLS = (None, "file", "local")


class LocalFolder:
    """Asset values as files under a folder: the embedded default, `data/assets/<asset>/<partition>.parquet`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def locate(self, name: str) -> str:
        return str(self.root / name)

    def write(self, name: str, frame: pl.DataFrame) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # A crashed step leaves at most a `.partial` file, never a half-written value under the real name.
        partial = path.with_suffix(".parquet.partial")
        frame.write_parquet(partial)
        os.replace(partial, path)
        return str(path)

    def read(self, name: str) -> pl.DataFrame | None:
        """The value, or None when none was ever written."""
        path = self.root / name
        return pl.read_parquet(path) if path.exists() else None


class ObjectStore:
    """Asset values as objects under an fsspec URL, each written whole or not at all."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.protocol = fsspec.core.split_protocol(url)[0]

    def locate(self, name: str) -> str:
        """The object's URL as it may be shown (in metadata, logs and errors): any password removed."""
        return redact(f"{self.url}/{name}")

    def write(self, name: str, frame: pl.DataFrame) -> str:
        url = f"{self.url}/{name}"
        with tempfile.TemporaryDirectory(prefix="ac-pipeline-") as folder:
            local = Path(folder) / "value.parquet"
            # Serialise completely before anything is sent: a failure here leaves the store untouched.
            frame.write_parquet(local)
            try:
                filesystem, path = self._filesystem(url)
                filesystem.put_file(str(local), path)
            except Exception as error:
                raise self._explain(error, "write") from error
        return self.locate(name)

    def read(self, name: str) -> pl.DataFrame | None:
        """The value, or None when none was ever written."""
        url = f"{self.url}/{name}"
        try:
            filesystem, path = self._filesystem(url)
            # One GET: the bytes of one version, even while a writer replaces the object (ranged reads
            # through fs.open could stitch two versions together).
            data = filesystem.cat_file(path)
        except FileNotFoundError as error:
            if _error_code(error) == "NoSuchBucket":
                raise self._explain(error, "read") from error
            return None
        except Exception as error:
            raise self._explain(error, "read") from error
        return pl.read_parquet(io.BytesIO(data))

    def _filesystem(self, url: str) -> tuple[AbstractFileSystem, str]:
        options: dict[str, object] = {
            # fsspec caches one instance per arguments, and the environment (credentials, endpoint) is not
            # among them: a fresh instance reads it now, as settings.paths() does.
            "skip_instance_cache": True,
        }
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if self.protocol in ("s3", "s3a") and region:
            # botocore reads AWS_DEFAULT_REGION only; AWS_REGION is what newer AWS tools and runtimes set.
            # The endpoint (AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL) botocore reads by itself.
            options["client_kwargs"] = {"region_name": region}
        filesystem, path = fsspec.core.url_to_fs(url, **options)
        return filesystem, path

    def _explain(self, error: Exception, action: str) -> Exception:
        """The same failure, saying which store and what to do about it (never a credential)."""
        where = f"{redact(self.url)}{self._endpoint()}"
        code = _error_code(error) or type(error).__name__
        if isinstance(error, FileNotFoundError):
            return FileNotFoundError(
                f"Cannot {action} asset values at {where}: the bucket does not exist ({code}). Create it, or "
                "point AC_PIPELINE_ASSETS at one that does."
            )
        if isinstance(error, PermissionError) or _is_a(error, "NoCredentialsError", "PartialCredentialsError"):
            return PermissionError(
                f"Cannot {action} asset values at {where}: access refused ({code}). Give this process "
                "credentials that may read and write there (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or a role), then run again."
            )
        # By name, both the built-in classes and botocore's (EndpointConnectionError, ReadTimeoutError, ...).
        if _is_a(error, "ConnectionError", "TimeoutError", "ConnectionClosedError"):
            return ConnectionError(
                f"Cannot {action} asset values at {where}: the store did not answer ({code}). Check "
                "AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL and that the store is reachable from this process."
            )
        return OSError(f"Cannot {action} asset values at {where}: {code}: {error}")

    def _endpoint(self) -> str:
        if self.protocol not in ("s3", "s3a"):
            return ""
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return f" (endpoint {redact(endpoint)})" if endpoint else " (AWS S3)"


def open_store(location: str) -> LocalFolder | ObjectStore:
    """A folder (a path or a file:// URL), or an object store for any other fsspec URL."""
    protocol, path = fsspec.core.split_protocol(location)
    return LocalFolder(Path(path)) if protocol in LOCAL_PROTOCOLS else ObjectStore(location)


def _error_code(error: BaseException) -> str | None:
    """S3's error code (NoSuchBucket, InvalidAccessKeyId, ...) from the botocore error s3fs chained."""
    response = getattr(error.__cause__, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def _is_a(error: BaseException, *names: str) -> bool:
    """Whether `error` is of a class named so: botocore is an optional dependency without type
    information, so its exceptions are recognised by name (its ConnectionError is not the built-in one)."""
    return any(cls.__name__ in names for cls in type(error).__mro__)
