"""Checkpoint save/restore throughput on local disk vs plain sequential I/O of the same bytes.

Save: ``CheckpointStore.writer(step)`` + ``writer.open(name)`` written in 8 MB chunks + ``commit``
(checksums on the way, fsyncs the files and the directory, writes MANIFEST.json and LATEST) vs
``open()/write()`` of the same bytes in the same chunks + fsync.
Restore: ``store.restore(step)`` + reading the file (every byte hashed as it is read, checked at
the end: one pass), and ``store.restore(step, full=False)`` (sizes only) + reading, vs a plain
sequential cold read. With torch: ``torch.save(state, path)`` + fsync vs ``torch.save`` into
``writer.open`` + commit, and ``torch.load(path)`` vs ``restore_with`` + ``torch.load``. Reads are
cold: before every timed operation the bench's own files are fsynced and dropped from the page
cache (``posix_fadvise(DONTNEED)``; the rest of the machine's cache is left alone). Object stores:
the same save and verified restore on *emulators* (moto's S3 server through s3fs, Azurite through
adlfs, gcp-storage-emulator through gcsfs, on localhost) vs the same filesystem's own put and get of the same bytes, and a verification
by a fresh store (the store's own checksums, no download). Goal: ≥ 0.9× the plain baseline.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# gcsfs 2026.x otherwise calls a gRPC Storage Control API the emulator lacks and hangs 60 s per
# call; it reads this once, at import (as tests/storage/conftest.py does).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import common
import fsspec

from multispot.checkpoint import CheckpointStore
from multispot.checkpoint.storage import WritebackFile
from multispot.checkpoint.store import CHUNK

MB = common.MB
NAME = "state.bin"
TORCH_NAME = "state.pt"
BYTE_OPS = (  # the order rows are reported in
    "plain write+fsync",
    "multispot save",
    EARLY := "plain write, early writeback, fsync (reference)",
    "plain read",
    "plain read, warm (2nd pass)",
    "restore (verify) + read",
    "restore (full=False) + read",
)
TENSOR_MB = 16  # the torch state: float32 tensors of 16 MB each, like the layers of a model
AZURITE_BIN = (
    Path(__file__).resolve().parents[1] / ".venv" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
)


def write_chunks(f: Any, view: memoryview) -> None:
    for offset in range(0, len(view), CHUNK):
        f.write(view[offset : offset + CHUNK])


def read_chunks(f: Any) -> int:
    total = 0
    while chunk := f.read(CHUNK):
        total += len(chunk)
    return total


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def random_bytes(size: int, block: int = 64 * MB) -> memoryview:
    """Incompressible bytes that no 4 KB block repeats (each 64 MB block rotated by an odd shift):
    nothing on the path (compressing or deduplicating storage) can cheat, and it is fast to make."""
    seed = os.urandom(block)
    out = bytearray(size)
    view = memoryview(out)
    for i, offset in enumerate(range(0, size, block)):
        shift = (i * 4099 + 1) % block
        rotated = seed[shift:] + seed[:shift]
        view[offset : offset + block] = rotated[: min(block, size - offset)]
    return view


def hash_throughput(view: memoryview) -> tuple[float, float, str]:
    """MB/s of plain sha256 on one thread, and of the checksum multispot computes while it writes
    and reads (fed in 8 MB pieces, as a stream feeds it)."""
    data = view[: min(len(view), 512 * MB)]
    mb = len(data) / MB
    one = mb / common.median_time(lambda: hashlib.sha256(data).hexdigest(), repeat=3, warmup=1)
    try:
        from multispot.checkpoint.digest import ALGORITHM, hasher
    except ImportError:
        return one, one, "sha256"

    def checksum() -> None:
        digest = hasher()
        for offset in range(0, len(data), CHUNK):
            digest.update(data[offset : offset + CHUNK])
        digest.hexdigest()

    return one, mb / common.median_time(checksum, repeat=3, warmup=1), ALGORITHM


class Bench:
    def __init__(self, root: Path, cold: bool) -> None:
        self.root, self.cold = root, cold
        self.uri = (root / "ckpt").as_uri()
        self.plain = root / "plain"
        self.plain.mkdir()
        self.store = CheckpointStore(self.uri)
        self.step = 0
        self.warm_after = {"plain read": "plain read, warm (2nd pass)"}

    def timed(self, fn: Callable[[], Any]) -> float:
        """One run of ``fn`` after writing back the bench's files and (cold) dropping them from the
        page cache: only the bench's own files, never the whole machine's cache."""
        if self.cold:
            common.drop_file_cache(self.root)
        else:
            os.sync()
        return common.timed(fn)[0]

    def run(
        self, writes: dict[str, Callable[[], Any]], reads: dict[str, Callable[[], Any]], turn: int
    ) -> dict:
        """Writes, then reads, each group in an order rotated by ``turn``: no operation always
        runs right after a big write (whose writeback the virtual disk may still be absorbing)."""
        out: dict[str, float] = {}
        for group in (writes, reads):
            names = list(group)
            for name in names[turn % len(names) :] + names[: turn % len(names)]:
                out[name] = self.timed(group[name])
                if name in self.warm_after:  # the same read again, from the page cache
                    out[self.warm_after[name]] = common.timed(group[name])[0]
        return out

    def bytes_round(self, view: memoryview, turn: int) -> dict[str, float]:
        """One repetition of every bytes-state operation; seconds per operation."""
        self.step += 1
        step, path = self.step, self.plain / NAME

        def plain_write() -> None:
            with open(path, "wb") as f:
                write_chunks(f, view)
                f.flush()
                os.fsync(f.fileno())

        def multispot_save() -> None:
            writer = self.store.writer(step)
            with writer.open(NAME) as f:
                write_chunks(f, view)
            writer.commit()

        def early_writeback() -> None:
            """The same bytes with the write strategy multispot's local writes use (writeback
            started every 8 MB, then one fsync), without the contract: what is left between this
            and ``multispot save`` is the contract's own cost (checksum, manifest, LATEST)."""
            with WritebackFile(str(path)) as f:
                write_chunks(f, view)
                os.fsync(f.fileno())

        def plain_read() -> None:
            with open(path, "rb") as f:
                assert read_chunks(f) == len(view)

        def restore(full: bool) -> Callable[[], None]:
            def run() -> None:
                restored = CheckpointStore(self.uri).restore(step, full=full)  # fresh: nothing cached
                with restored.open(NAME) as f:
                    assert read_chunks(f) == len(view)

            return run

        out = self.run(
            {"plain write+fsync": plain_write, "multispot save": multispot_save, EARLY: early_writeback},
            {
                "plain read": plain_read,
                "restore (verify) + read": restore(True),
                "restore (full=False) + read": restore(False),
            },
            turn,
        )
        out = {name: out[name] for name in BYTE_OPS}
        path.unlink()
        self.store.delete(step)
        return out

    def torch_round(self, state: dict[str, Any], turn: int) -> dict[str, float]:
        import torch

        self.step += 1
        step, path = self.step, self.plain / TORCH_NAME

        def plain_save() -> None:
            torch.save(state, path)
            fsync_path(path)

        def multispot_save() -> None:
            writer = self.store.writer(step)
            with writer.open(TORCH_NAME) as f:
                torch.save(state, f)
            writer.commit()

        def plain_load() -> None:
            torch.load(path, weights_only=True)

        def restore_load(full: bool) -> Callable[[], None]:
            def load(restored: Any) -> Any:
                with restored.open(TORCH_NAME) as f:
                    return torch.load(f, weights_only=True)

            def run() -> None:
                if full:  # as TrainingState.restore does it: verification runs while torch.load reads
                    common.checkpointer(self.root / "ckpt").restore_with(load)
                else:
                    load(CheckpointStore(self.uri).restore(step, full=False))

            return run

        out = self.run(
            {"torch.save(path)+fsync": plain_save, "torch.save via writer.open+commit": multispot_save},
            {
                "torch.load(path)": plain_load,
                "restore (verify) + torch.load": restore_load(True),
                "restore (full=False) + torch.load": restore_load(False),
            },
            turn,
        )
        path.unlink()
        self.store.delete(step)
        return out


@contextlib.contextmanager
def moto_s3() -> Iterator[tuple[dict[str, Any], str]]:
    """moto's S3 server on localhost: (storage options, bucket)."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the emulator's access log
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds).create_bucket(
            Bucket="bench"
        )
        yield (
            {
                "key": "testing",
                "secret": "testing",
                "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            },
            "bench",
        )
    finally:
        server.stop()


@contextlib.contextmanager
def azurite() -> Iterator[tuple[dict[str, Any], str]]:
    """Azurite (npm package under .venv/azurite, as `make test` installs it), in memory."""
    from azure.storage.blob import BlobServiceClient

    account = "devstoreaccount1"
    # Azurite's published development key (public; it opens nothing but the emulator).
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    port = free_port()
    flags = ["--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]
    proc = subprocess.Popen(
        [str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", str(port), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Azurite did not start")
            time.sleep(0.1)
        connection = (
            f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{account};"
        )
        BlobServiceClient.from_connection_string(connection).create_container("bench")
        yield {"connection_string": connection}, "bench"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def gcs_emulator() -> Iterator[tuple[dict[str, Any], str]]:
    """gcp-storage-emulator (a Python package, the dev extra) on localhost, in memory."""
    from gcp_storage_emulator.server import create_server

    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="bench")
    server.start()  # its thread is no daemon: always stop it
    try:
        yield {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon"}, "bench"
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


OBJECT_STORES = {  # label -> (protocol, emulator, what must be importable)
    "s3 (moto)": ("s3", moto_s3, ("boto3", "s3fs", "moto.server")),
    "az (Azurite)": ("az", azurite, ("adlfs", "azure.storage.blob")),
    "gs (gcp-storage-emulator)": ("gs", gcs_emulator, ("gcsfs", "gcp_storage_emulator.server")),
}


def object_store(label: str, view: memoryview, repeat: int) -> list[dict[str, float]] | str:
    """Save and verified restore through the contract on an object-store emulator vs the same
    fsspec filesystem's own put (``pipe_file``) and get (``cat_file``) of the same bytes; and a
    verification by a fresh store (the store's own checksums: no download). A string says why not."""
    protocol, emulator, needs = OBJECT_STORES[label]
    for module in needs:
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{module} is not installed"
    if protocol == "az" and not AZURITE_BIN.exists():
        return f"Azurite is not installed at {AZURITE_BIN} (make test installs it)"
    with emulator() as (options, bucket):
        fs = fsspec.filesystem(protocol, **options)
        uri = f"{protocol}://{bucket}/ckpt"
        data = bytes(view)
        rounds = []
        for step in range(1, repeat + 1):
            out: dict[str, float] = {}
            out["fsspec put"] = common.timed(lambda: fs.pipe_file(f"{bucket}/plain.bin", data))[0]
            store = CheckpointStore(uri, storage_options=options)

            def save(step: int = step, store: CheckpointStore = store) -> None:
                with store.writer(step) as writer, writer.open(NAME) as f:
                    write_chunks(f, memoryview(data))

            out["multispot save"] = common.timed(save)[0]
            # What the save does underneath for a file over a part: the filesystem's multipart upload.
            spool = Path(tempfile.gettempdir(), f"multispot-bench-{os.getpid()}.bin")
            spool.write_bytes(data)
            try:
                parts = store.storage.put_options()  # type: ignore[attr-defined]
                out["fsspec put_file, same parts (reference)"] = common.timed(
                    lambda spool=spool, parts=parts: fs.put_file(str(spool), f"{bucket}/parts.bin", **parts)
                )[0]
            finally:
                spool.unlink()
            out["fsspec get"] = common.timed(lambda: fs.cat_file(f"{bucket}/plain.bin"))[0]

            def restore(step: int = step) -> None:
                fresh = CheckpointStore(uri, storage_options=options)
                assert len(fresh.restore(step).read_bytes(NAME)) == len(data)

            out["restore (verify) + read_bytes"] = common.timed(restore)[0]

            def verify(step: int = step) -> None:
                assert CheckpointStore(uri, storage_options=options).verify(step).ok

            out["verify, fresh store (store checksum)"] = common.timed(verify)[0]
            CheckpointStore(uri, storage_options=options).delete(step)
            rounds.append(out)
        return rounds


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: common.median([r[key] for r in rounds]) for key in rounds[0]}


def ratios(rounds: list[dict[str, float]], op: str, base: str) -> list[float]:
    """``base``'s time / ``op``'s time within each round (a throughput ratio)."""
    return [r[base] / r[op] for r in rounds]


def paired(rounds: list[dict[str, float]], op: str, base: str) -> float:
    """The median over rounds of ``base``'s time / ``op``'s time measured in the same round.

    This VM's disk drifts between rounds (a 256 MB write+fsync took 0.14 s or 0.9 s back to back):
    a ratio of the two medians mixes rounds, a ratio within a round compares like with like."""
    return common.median(ratios(rounds, op, base))


def spread(rounds: list[dict[str, float]], op: str, base: str) -> str:
    """The per-round ratios' lowest and highest, to print beside the median."""
    found = ratios(rounds, op, base)
    return f"{min(found):.2f}–{max(found):.2f}"


def report(size_mb: int, rounds: list[dict[str, float]], baselines: dict[str, str]) -> list[tuple]:
    rows = []
    seconds = medians(rounds)
    for op, s in seconds.items():
        base = baselines.get(op)
        ratio = paired(rounds, op, base) if base else None  # throughput ratio = baseline time / our time
        rows.append(
            (
                f"{size_mb} MB",
                op,
                s * 1000,
                size_mb / s,
                ("reference" if "warm" in op or "reference" in op else "baseline")
                if base is None
                else f"{ratio:.2f}×",
            )
        )
    return rows


def main() -> None:
    def setup(parser: Any) -> None:
        parser.add_argument("--sizes", help="comma-separated sizes in MB (default 64,256,1024,2048)")
        parser.add_argument("--repeat", type=int, help="repetitions per size (median counts)")
        parser.add_argument("--no-torch", action="store_true", help="skip the torch.save/torch.load part")
        parser.add_argument("--no-object-store", action="store_true", help="skip the emulator rows")
        parser.add_argument(
            "--object-store-only", action="store_true", help="only the object-store emulator rows"
        )
        parser.add_argument(
            "--object-store-mb", type=int, help="file size of the emulator rows (default: the smallest size)"
        )
        parser.add_argument(
            "--fresh-memory",
            action="store_true",
            help="let freed memory go back to the kernel (glibc's default): every operation's buffers "
            "then fault in fresh pages, which this VM hands out at very uneven speeds",
        )

    args = common.parse_args(__doc__.splitlines()[0], setup)
    common.banner("checkpoint_io", args.quick)
    root = common.bench_dir("io")
    common.print_machine(root)
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else [64, 1024]
        if args.quick
        else [64, 256, 1024, 2048]
    )
    if args.object_store_only:
        sizes = [args.object_store_mb or min(sizes)]
    try:
        import torch
    except ImportError:
        torch = None  # type: ignore[assignment]
    if args.no_torch:
        torch = None  # type: ignore[assignment]

    cold = hasattr(os, "posix_fadvise")
    reads = (
        "cold (the bench's files fsynced and dropped from the page cache before every operation)"
        if cold
        else "warm page cache (no posix_fadvise here)"
    )
    print(f"reads: {reads}")
    kept = not args.fresh_memory and common.keep_freed_memory()
    print(
        "memory: freed memory kept in the process (glibc mallopt), so buffers reuse touched pages "
        "in the baseline and in multispot alike (--fresh-memory: without)"
        if kept
        else "memory: glibc's default (freed memory returned; buffers fault in fresh pages)"
    )

    def repeat(size_mb: int) -> int:
        # small sizes run fast and drift most between rounds (page-cache memory, not the disk): more
        # rounds. Multiples of 3: each group of 3 operations rotates, so each runs first equally often
        # (the first read after a round's writes is the slow one).
        return int(args.repeat or (33 if size_mb <= 64 else 9))

    runs = ", ".join(f"{s} MB ×{repeat(s)}" for s in sizes)
    print(f"sizes: {runs} (MB = 2^20 bytes; the median of the runs counts)")

    largest = max(sizes) * MB
    buffer = random_bytes(largest)
    sha_mbps, checksum_mbps, algorithm = hash_throughput(buffer)
    bench = Bench(root, cold)

    object_rows: list[tuple] = []
    object_summary: list[tuple] = []
    byte_rows: list[tuple] = []
    torch_rows: list[tuple] = []
    summary: list[tuple] = []
    spreads: list[tuple] = []
    own_cost: list[str] = []
    try:
        for size_mb in [] if args.object_store_only else sizes:
            free = shutil.disk_usage(root).free
            if free < 2.5 * size_mb * MB:
                print(f"skipped {size_mb} MB: only {free / MB:.0f} MB free under {root}")
                continue
            view = buffer[: size_mb * MB]
            b_rounds = [bench.bytes_round(view, i) for i in range(repeat(size_mb))]
            byte_rows += report(
                size_mb,
                b_rounds,
                {
                    "multispot save": "plain write+fsync",
                    "restore (verify) + read": "plain read",
                    "restore (full=False) + read": "plain read",
                },
            )
            pairs = [
                (b_rounds, "multispot save", "plain write+fsync"),
                (b_rounds, "restore (verify) + read", "plain read"),
                (b_rounds, "restore (full=False) + read", "plain read"),
            ]
            if torch is not None:
                count = max(1, size_mb // TENSOR_MB)
                state = {f"layer{i}.weight": torch.rand(TENSOR_MB * MB // 4) for i in range(count)}
                t_rounds = [bench.torch_round(state, i) for i in range(repeat(size_mb))]
                del state
                torch_rows += report(
                    size_mb,
                    t_rounds,
                    {
                        "torch.save via writer.open+commit": "torch.save(path)+fsync",
                        "restore (verify) + torch.load": "torch.load(path)",
                        "restore (full=False) + torch.load": "torch.load(path)",
                    },
                )
                pairs += [
                    (t_rounds, "torch.save via writer.open+commit", "torch.save(path)+fsync"),
                    (t_rounds, "restore (verify) + torch.load", "torch.load(path)"),
                    (t_rounds, "restore (full=False) + torch.load", "torch.load(path)"),
                ]
            own_cost.append(
                f"{size_mb} MB: {paired(b_rounds, 'multispot save', EARLY):.2f} "
                f"({spread(b_rounds, 'multispot save', EARLY)})"
            )
            summary.append((f"{size_mb} MB", *(paired(r, op, base) for r, op, base in pairs)))
            spreads.append((f"{size_mb} MB", *(spread(r, op, base) for r, op, base in pairs)))
            print(f"done: {size_mb} MB")
        if not args.no_object_store:
            size_mb = args.object_store_mb or min(sizes)
            for label in OBJECT_STORES:
                found = object_store(label, buffer[: size_mb * MB], 3 if args.quick else repeat(size_mb))
                if isinstance(found, str):
                    print(f"skipped the {label} rows: {found}")
                    continue
                object_rows += [
                    (label, *row)
                    for row in report(
                        size_mb,
                        found,
                        {
                            "multispot save": "fsspec put",
                            "restore (verify) + read_bytes": "fsspec get",
                            "verify, fresh store (store checksum)": "fsspec get",
                        },
                    )
                ]
                object_summary.append(
                    (
                        label,
                        f"{size_mb} MB",
                        paired(found, "multispot save", "fsspec put"),
                        paired(found, "restore (verify) + read_bytes", "fsspec get"),
                    )
                )
                print(f"done: {label}")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    headers = ["size", "operation", "median ms", "MB/s", "throughput vs baseline"]
    common.heading("Bytes state (one file, written in 8 MB chunks)")
    common.table(headers, byte_rows)
    if torch_rows:
        common.heading(f"Torch state (dict of {TENSOR_MB} MB float32 tensors, one state.pt)")
        common.table(headers, torch_rows)

    common.heading(
        "Summary: throughput ratios to the baseline, median over rounds of the ratio within each round "
        "(higher is better)"
    )
    summary_headers = ["size", "save / write", "restore(verify) / read", "restore(no verify) / read"]
    if torch_rows:
        summary_headers += [
            "save / torch.save",
            "restore(verify)+load / load",
            "restore(no verify)+load / load",
        ]
    common.table(summary_headers, summary)
    print("\nLowest–highest ratio over the rounds (this VM's disk is noisy):\n")
    common.table(summary_headers, spreads)
    if own_cost:
        print(
            "\nmultispot's local writes start the disk's writeback every 8 MB, which a plain write+fsync "
            "leaves to the fsync. The contract's own cost, save / the same bytes written that way "
            "(median, range): " + "; ".join(own_cost)
        )

    print(
        f"\nhashing on this CPU: sha256 {sha_mbps:.0f} MB/s on one thread; multispot's checksum ({algorithm}) "
        f"{checksum_mbps:.0f} MB/s."
    )
    if byte_rows:
        size, seconds = sizes[-1], {r[1]: r[2] / 1000 for r in byte_rows if r[0] == f"{sizes[-1]} MB"}
        write, read = size / seconds["plain write+fsync"], size / seconds["plain read"]
        warm = size / seconds["plain read, warm (2nd pass)"]
        print(
            f"plain I/O at {size} MB: write+fsync {write:.0f} MB/s, cold read {read:.0f} MB/s, warm read "
            f"{warm:.0f} MB/s. A verified restore reads every byte once and hashes it inline, so its cost "
            f"over a plain read is about read / checksum = {read / checksum_mbps:.0%} of the read."
        )
    print()
    for row in summary:
        size = row[0]
        common.goal(f"{size} save vs plain write+fsync", row[1], 0.9, at_most=False)
        common.goal(f"{size} restore (verify) + read vs plain read", row[2], 0.9, at_most=False)
        common.goal(f"{size} restore (full=False) + read vs plain read", row[3], 0.9, at_most=False)
        if torch_rows:
            common.goal(
                f"{size} torch.save through the contract vs torch.save+fsync", row[4], 0.9, at_most=False
            )
            common.goal(f"{size} restore (verify) + torch.load vs torch.load", row[5], 0.9, at_most=False)
    if object_rows:
        common.heading(
            "Object stores (EMULATORS on localhost, not a cloud: moto's S3 server through s3fs, "
            "Azurite through adlfs, gcp-storage-emulator through gcsfs); baseline: the same "
            "filesystem's pipe_file / cat_file"
        )
        common.table(["store", *headers], object_rows)
        for store_label, size_label, save_ratio, restore_ratio in object_summary:
            common.goal(f"{store_label} emulator, {size_label} save vs put", save_ratio, 0.9, at_most=False)
            common.goal(
                f"{store_label} emulator, {size_label} restore (verify) + read vs get",
                restore_ratio,
                0.9,
                at_most=False,
            )


if __name__ == "__main__":
    main()
