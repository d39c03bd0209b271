"""fetch_dataset against a real local HTTP server: downloads, retries, checksums, and cleanup, no network."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ncflow.data.download import fetch_dataset, file_md5
from ncflow.errors import NcflowError

NAME = "ml-100k"
FAST = {"backoff_s": 0.001, "progress": False}


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    extra_length: int = 0  # announce this many bytes more than are sent, then close: a truncated body
    pause_s: float = 0.0  # stall this long half-way through the body: a slow download


@dataclass
class Plan:
    """Replies in order; the last one repeats. `requests` counts what the server saw."""

    replies: list[Reply] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> Reply:
        with self.lock:
            self.requests += 1
            return self.replies[min(self.requests, len(self.replies)) - 1]


@dataclass
class Server:
    url: str
    plan: Plan


@pytest.fixture
def server() -> Iterator[Server]:
    plan = Plan()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            reply = plan.next()
            self.send_response(reply.status)
            self.send_header("Content-Length", str(len(reply.body) + reply.extra_length))
            self.end_headers()
            half = len(reply.body) // 2
            self.wfile.write(reply.body[:half])
            self.wfile.flush()
            time.sleep(reply.pause_s)
            self.wfile.write(reply.body[half:])
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}/{NAME}.zip", plan)
    finally:
        httpd.shutdown()
        httpd.server_close()


def make_zip(rows: str = "1\t10\t5\t881250949\n2\t20\t3\t891717742\n") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{NAME}/u.data", rows)
        zf.writestr(f"{NAME}/u.item", "10|Film A|\n20|Film B|\n")
    return buf.getvalue()


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def leftovers(data_dir: Path) -> list[str]:
    """Anything a later run could trust (or that shows an unclean exit)."""
    return sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file())


def test_good_archive_then_cached(server: Server, tmp_path: Path) -> None:
    archive = make_zip()
    server.plan.replies = [Reply(body=archive)]
    out = fetch_dataset(NAME, tmp_path, server.url, md5=md5_of(archive), backoff_s=0.001, progress=True)
    assert out == tmp_path / "raw" / NAME
    assert (out / NAME / "u.data").read_text().startswith("1\t10\t5")
    assert (out / ".verified").read_text().strip() == md5_of(archive)
    assert file_md5(tmp_path / "downloads" / f"{NAME}.zip") == md5_of(archive)
    assert not (tmp_path / "downloads" / f"{NAME}.zip.part").exists()
    assert server.plan.requests == 1

    again = fetch_dataset(NAME, tmp_path, server.url, md5=md5_of(archive), **FAST)
    assert again == out
    assert server.plan.requests == 1  # no HTTP at all


def test_verified_zip_in_downloads_is_extracted_without_network(server: Server, tmp_path: Path) -> None:
    archive = make_zip()
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / f"{NAME}.zip").write_bytes(archive)
    out = fetch_dataset(NAME, tmp_path, server.url, md5=md5_of(archive), **FAST)
    assert (out / NAME / "u.data").is_file()
    assert server.plan.requests == 0


def test_checksum_mismatch_leaves_nothing(server: Server, tmp_path: Path) -> None:
    archive = make_zip()
    server.plan.replies = [Reply(body=archive)]
    wrong = "0" * 32
    with pytest.raises(NcflowError, match=f"checksum mismatch for .*expected {wrong}, got {md5_of(archive)}"):
        fetch_dataset(NAME, tmp_path, server.url, md5=wrong, **FAST)
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "raw" / NAME).exists()


def test_server_errors_are_retried(server: Server, tmp_path: Path) -> None:
    archive = make_zip()
    server.plan.replies = [Reply(500), Reply(503), Reply(body=archive)]
    out = fetch_dataset(NAME, tmp_path, server.url, md5=md5_of(archive), retries=3, **FAST)
    assert (out / ".verified").is_file()
    assert server.plan.requests == 3


def test_retries_exhausted(server: Server, tmp_path: Path) -> None:
    server.plan.replies = [Reply(500)]
    with pytest.raises(NcflowError, match="could not download ml-100k .*HTTP 500.*--source"):
        fetch_dataset(NAME, tmp_path, server.url, md5="0" * 32, retries=2, **FAST)
    assert server.plan.requests == 3  # the first try and two retries
    assert leftovers(tmp_path) == []


def test_not_found_is_not_retried(server: Server, tmp_path: Path) -> None:
    server.plan.replies = [Reply(404)]
    with pytest.raises(NcflowError, match="HTTP 404"):
        fetch_dataset(NAME, tmp_path, server.url, md5="0" * 32, retries=3, **FAST)
    assert server.plan.requests == 1
    assert leftovers(tmp_path) == []


def test_truncated_body(server: Server, tmp_path: Path) -> None:
    archive = make_zip()
    server.plan.replies = [Reply(body=archive[:100], extra_length=len(archive) - 100)]
    with pytest.raises(NcflowError, match="truncated"):
        fetch_dataset(NAME, tmp_path, server.url, md5=md5_of(archive), retries=1, **FAST)
    assert server.plan.requests == 2  # truncation is retried
    assert leftovers(tmp_path) == []


def test_truncated_then_whole(server: Server, tmp_path: Path) -> None:
    archive = make_zip()
    server.plan.replies = [Reply(body=archive[:100], extra_length=len(archive) - 100), Reply(body=archive)]
    out = fetch_dataset(NAME, tmp_path, server.url, md5=md5_of(archive), retries=1, **FAST)
    assert (out / NAME / "u.data").is_file()


def test_no_server_mentions_source(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/{NAME}.zip"
    with pytest.raises(NcflowError) as err:
        fetch_dataset(NAME, tmp_path, url, md5="0" * 32, retries=1, **FAST)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"could not download {NAME} from {url}: ")
    assert "--source" in message and f"{NAME}.zip" in message and "u.data" in message
    assert leftovers(tmp_path) == []


def test_source_folder_is_returned_as_is(tmp_path: Path) -> None:
    folder = tmp_path / "mirror" / "deep" / NAME
    folder.mkdir(parents=True)
    (folder / "u.data").write_text("1\t10\t5\t881250949\n")
    data_dir = tmp_path / "data"
    assert fetch_dataset(NAME, data_dir, str(tmp_path / "mirror"), **FAST) == tmp_path / "mirror"
    assert not data_dir.exists()  # no copy


def test_source_folder_without_ratings(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(NcflowError, match="holds no u.data"):
        fetch_dataset(NAME, tmp_path / "data", str(tmp_path / "empty"), **FAST)


def test_source_local_zip(tmp_path: Path) -> None:
    archive = make_zip()
    local = tmp_path / f"{NAME}.zip"
    local.write_bytes(archive)
    out = fetch_dataset(NAME, tmp_path / "data", str(local), md5=md5_of(archive), **FAST)
    assert (out / NAME / "u.data").is_file()
    assert (out / ".verified").read_text().strip() == md5_of(archive)
    assert local.is_file()  # the user's archive is left where it was


def test_source_local_zip_wrong_checksum_keeps_users_file(tmp_path: Path) -> None:
    local = tmp_path / f"{NAME}.zip"
    local.write_bytes(make_zip())
    with pytest.raises(NcflowError, match="checksum mismatch"):
        fetch_dataset(NAME, tmp_path / "data", str(local), md5="0" * 32, **FAST)
    assert local.is_file()
    assert not (tmp_path / "data").exists()


def test_source_file_url(tmp_path: Path) -> None:
    archive = make_zip()
    local = tmp_path / "mirror.zip"
    local.write_bytes(archive)
    out = fetch_dataset(NAME, tmp_path / "data", local.as_uri(), md5=md5_of(archive), **FAST)
    assert (out / NAME / "u.data").is_file()


def test_corrupt_zip_with_right_md5(server: Server, tmp_path: Path) -> None:
    junk = b"PK\x03\x04 this is not really a zip archive" * 10
    server.plan.replies = [Reply(body=junk)]
    with pytest.raises(NcflowError, match="not a valid zip archive"):
        fetch_dataset(NAME, tmp_path, server.url, md5=md5_of(junk), **FAST)
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "raw" / NAME).exists()


def test_corrupt_member_data_with_right_md5(server: Server, tmp_path: Path) -> None:
    archive = bytearray(make_zip("1\t10\t5\t881250949\n" * 200))
    archive[60:80] = b"\xff" * 20  # inside the first member's compressed data
    body = bytes(archive)
    server.plan.replies = [Reply(body=body)]
    with pytest.raises(NcflowError, match="not a valid zip archive"):
        fetch_dataset(NAME, tmp_path, server.url, md5=md5_of(body), **FAST)
    assert leftovers(tmp_path) == []


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(NcflowError, match="unknown dataset"):
        fetch_dataset("ml-nope", tmp_path, **FAST)


def test_two_downloads_of_one_dataset_at_once_share_nothing_half_written(
    server: Server, tmp_path: Path
) -> None:
    """The second waits for the first (a lock per dataset), then finds it verified: one request, one
    whole archive, and no part file of either left behind."""
    archive = make_zip()
    server.plan.replies = [Reply(body=archive, pause_s=0.5)]
    results: list[Path | BaseException] = []

    def fetch() -> None:
        try:
            results.append(fetch_dataset(NAME, tmp_path, server.url, md5=md5_of(archive), **FAST))
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            results.append(err)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [tmp_path / "raw" / NAME] * 2, results
    assert server.plan.requests == 1
    assert file_md5(tmp_path / "downloads" / f"{NAME}.zip") == md5_of(archive)
    assert leftovers(tmp_path) == [f"downloads/{NAME}.zip", f"raw/{NAME}/.verified", f"raw/{NAME}/{NAME}/u.data",
                                   f"raw/{NAME}/{NAME}/u.item"]  # fmt: skip
