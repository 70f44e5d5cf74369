"""Workload 10: EGA's Live Outbox, one Crypt4GH file over SFTP from OpenSSH's sshd.

The server is the one the tests use (``mirror.emulator.SftpOutbox``: sshd as root, chroot,
``internal-sftp -R``), over one generated file encrypted for a fresh Crypt4GH key, with
EGA's metadata API from the emulator (``python -m mirror.emulator``). The peer is
OpenSSH's own client, ``sftp -b`` ``get`` of the ``.c4gh`` file (a key without
passphrase: ``sftp`` cannot be given one), verified by the encrypted file's MD5. The
floor is what any client that hands over verified plaintext must also do: decrypt
every segment and hash the plaintext (SHA256, the checksum EGA publishes), measured in
memory on one core after each repetition. ``floor = max(sftp's wall, decrypt + SHA256)``.

ebi-mirror's rows (``mirror run`` of ``ega: {protocol: outbox}``: the default, SFTP through
OpenSSH's ``ssh``, and ``ssh_client: asyncssh``, in-process) run when that source
accepts the manifest (``mirror plan`` of it succeeds before the timing); otherwise the
table has the peer and the floor alone and a note says why.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import crypt4gh.header
import crypt4gh.keys
import crypt4gh.sodium

from mirror.emulator import Catalog, OutboxFile, SftpOutbox, md5_of
from mirror.emulator.ega._sftp import OUTBOX_USER, OutboxKeys, make_keys

from ._data import FileSpec, VerificationFailed, verify
from ._measure import Measurement, run_measured
from ._results import GIB, Row, Target, WorkloadResult, median_ratio
from ._servers import Emulator
from ._suite import Suite
from ._transfer import MIRROR

__all__ = ["w10_outbox"]

KEY = "W10"
DATASET = "EGAD50000000010"
SFTP = "sftp get (OpenSSH, .c4gh)"
#: ebi-mirror with the SSH transport in its own process (the default is OpenSSH's ssh).
IN_PROCESS = "ebi-mirror (ssh_client: asyncssh)"
SHELL = "sftp get; crypt4gh decrypt; sha256sum; md5sum"
DECRYPT = "decrypt + SHA256 + MD5 in memory (1 core)"
FLOOR = "floor = max(sftp, decrypt+hashes, CPU / 2 cores)"
#: ebi-mirror may take this much longer than sftp's get: throughput >= 0.8 x sftp's.
LIMIT = 1 / 0.8
_SEGMENT = 65536
_CIPHER_SEGMENT = 65536 + 28
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _Decrypt:
    """The encrypted file in memory; ``measure`` decrypts it and hashes the plaintext as
    ebi-mirror must (SHA256, EGA's checksum, checked; MD5, the index's), on one core."""

    def __init__(self, data: bytes, keys: OutboxKeys, sha256: str) -> None:
        self.data = data
        self.sha256 = sha256
        secret = crypt4gh.keys.get_private_key(keys.c4gh_secret, lambda: keys.c4gh_passphrase)
        self._keys = [(0, secret, None)]

    def measure(self) -> Measurement:
        view = memoryview(self.data)
        segment = bytearray(_SEGMENT)
        plain = memoryview(segment)
        digest = hashlib.sha256()
        md5 = hashlib.md5()
        wall, cpu = time.perf_counter(), time.thread_time()
        head = io.BytesIO(self.data[:4096])
        (session_key, *_), _ = crypt4gh.header.deconstruct(head, self._keys)
        decrypt = crypt4gh.sodium.chacha20poly1305_decrypt
        for pos in range(head.tell(), len(view), _CIPHER_SEGMENT):
            n = decrypt(segment, view[pos : pos + _CIPHER_SEGMENT], session_key)
            digest.update(plain[:n])
            md5.update(plain[:n])
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        if digest.hexdigest() != self.sha256:
            raise VerificationFailed(f"in memory: SHA256 {digest.hexdigest()} != {self.sha256}")
        return Measurement.in_process(
            DECRYPT,
            ["crypt4gh segments + hashlib sha256, md5", f"{len(view)} bytes in memory"],
            wall,
            cpu,
        )


def _sftp_command(
    suite: Suite, server: SftpOutbox, keys: OutboxKeys, item: OutboxFile
) -> Callable[[Path], list[str]]:
    sftp = suite.tools["sftp"]
    known = server.known_hosts()

    def command(out: Path) -> list[str]:
        batch = out / "batch.sftp"
        batch.write_text(f"get {item.dataset}/{item.c4gh_name} {out / item.c4gh_name}\n")
        return [
            sftp,
            "-b",
            str(batch),
            "-i",
            str(keys.ssh_key_plain),
            "-P",
            str(server.port),
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            f"{OUTBOX_USER}@127.0.0.1",
        ]

    return command


def _shell_command(
    sftp: Callable[[Path], list[str]], keys: OutboxKeys, item: OutboxFile, plain: str
) -> Callable[[Path], list[str]]:
    """What a careful shell user does: ``sftp get``, then decrypt and check the plaintext."""
    crypt4gh = str(Path(sys.executable).with_name("crypt4gh"))

    def command(out: Path) -> list[str]:
        c4gh, target = out / item.c4gh_name, out / plain
        steps = [
            shlex.join(sftp(out)),
            shlex.join(["mkdir", "-p", str(target.parent)]),
            f"{shlex.join([crypt4gh, 'decrypt', '--sk', str(keys.c4gh_secret)])} "
            f"< {shlex.quote(str(c4gh))} > {shlex.quote(str(target))}",
            f"rm {shlex.quote(str(c4gh))}",
            f"sha256sum {shlex.quote(str(target))} > {shlex.quote(str(out / 'sha256'))}",
            f"md5sum {shlex.quote(str(target))} > {shlex.quote(str(out / 'md5'))}",
        ]
        return ["sh", "-ec", " && ".join(steps)]

    return command


def _mirror_slot(
    suite: Suite, server: SftpOutbox, keys: OutboxKeys, metadata: str, client: str | None = None
) -> tuple[Callable[[Path], list[str]] | None, dict[str, str], str]:
    """ebi-mirror's command, its environment, and why it is left out (empty when not)."""
    entry: dict[str, object] = {"datasets": [DATASET], "protocol": "outbox"}
    if client is not None:
        entry["ssh_client"] = client
    manifest = suite.work / "manifests" / f"{KEY}-{client or 'default'}.yaml"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(
        json.dumps(
            {
                "version": 1,
                "dest": str(suite.work / "runs" / KEY / "default-dest"),
                "endpoints": {
                    "ega_outbox": f"sftp://127.0.0.1:{server.port}",
                    "ega_metadata": metadata,
                },
                "sources": [{"ega": entry}],
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    env = {
        "EGA_USERNAME": OUTBOX_USER,
        "EGA_SSH_KEY": str(keys.ssh_key),
        "EGA_SSH_PASSPHRASE": keys.ssh_passphrase,
        "C4GH_SECRET_KEY": str(keys.c4gh_secret),
        "C4GH_PASSPHRASE": keys.c4gh_passphrase,
        # The server's host key, checked as a user's ~/.ssh/known_hosts would be.
        "EGA_KNOWN_HOSTS": str(server.known_hosts()),
    }
    probe_dest = suite.fresh(KEY, "probe")
    probe = subprocess.run(
        [*suite.mirror, "plan", str(manifest), "--dest", str(probe_dest)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
    )
    shutil.rmtree(probe_dest, ignore_errors=True)
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        return None, env, why

    def command(out: Path) -> list[str]:
        return [*suite.mirror, "run", str(manifest), "--dest", str(out), "-q"]

    return command, env, ""


def w10_outbox(suite: Suite) -> WorkloadResult:
    size = (256 << 20) if suite.quick else (1 << 30)
    result = WorkloadResult(key=KEY, title=f"EGA Live Outbox, one {size / GIB:g} GiB file")
    catalog = Catalog.generate_outbox(DATASET, files=1, sizes=(size,))
    (item,) = catalog.outbox_datasets[0].files
    keys_dir = suite.work / "outbox-keys"
    shutil.rmtree(keys_dir, ignore_errors=True)
    keys = make_keys(keys_dir)
    started = time.perf_counter()
    emulator = Emulator(catalog.to_dict(), suite.work / "emulator" / KEY)
    with SftpOutbox(catalog, keys) as server, emulator as emu:
        setup = time.perf_counter() - started
        encrypted = server.root / DATASET / item.c4gh_name
        suite.say(f"  {KEY} sshd on :{server.port}, {encrypted.name} written in {setup:.1f} s")
        # Outside the timing: the metadata API's checksum (it hashes the plaintext once).
        metadata = emu.endpoints["ega_metadata"]
        with _OPENER.open(f"{metadata}/datasets/{DATASET}/files", timeout=600) as answer:
            (record,) = json.load(answer)
        sha256 = record["unencrypted_checksum"]
        data = encrypted.read_bytes()
        c4gh_md5 = hashlib.md5(data).hexdigest()
        floor = _Decrypt(data, keys, sha256)
        del data
        c4gh_spec = FileSpec(item.c4gh_name, DATASET, item.c4gh_size, c4gh_md5)
        plain_spec = FileSpec(
            f"ega/{DATASET}/{item.accession}/{item.name}",
            DATASET,
            item.size,
            md5_of(item.content_key, item.size),
        )
        mirror, mirror_env, why = _mirror_slot(suite, server, keys, metadata)
        runners: list[tuple[str, Callable[[Path], list[str]], FileSpec, dict[str, str] | None]]
        sftp = _sftp_command(suite, server, keys, item)
        shell = _shell_command(sftp, keys, item, plain_spec.path)
        runners = [
            (SFTP, sftp, c4gh_spec, None),
            (SHELL, shell, plain_spec, {"C4GH_PASSPHRASE": keys.c4gh_passphrase}),
        ]
        if mirror is not None:
            runners.insert(0, (MIRROR, mirror, plain_spec, mirror_env))
            slow, _, _ = _mirror_slot(suite, server, keys, metadata, "asyncssh")
            if slow is not None:
                runners.insert(1, (IN_PROCESS, slow, plain_spec, mirror_env))
        else:
            result.notes.append(f"ebi-mirror's row is left out: mirror plan said: {why}")
        results: dict[str, list[Measurement]] = {name: [] for name, *_ in runners}
        decrypts: list[Measurement] = []
        for rep in range(suite.reps):
            for name, command, spec, env in runners:
                out = suite.fresh(KEY, "".join(c if c.isalnum() else "-" for c in name))
                os.sync()
                served = server.served_cpu()
                m = run_measured(
                    name,
                    command(out),
                    log=suite.log(KEY, f"{name.split()[0]}-{rep}"),
                    env={**os.environ, **env} if env else None,
                )
                # What sshd spent serving this run: the server's half of the machine.
                m.extra["sshd_cpu"] = server.served_cpu() - served
                checked = verify(name, [(out / spec.path, spec.size, spec.md5)])
                m.extra.update(files=checked.files, bytes=checked.bytes, verified=True)
                results[name].append(m)
                suite.say(
                    f"  {KEY} rep {rep + 1}/{suite.reps} {name:<34} {m.wall:7.2f} s  "
                    f"cpu {m.cpu:6.2f} s  sshd {m.extra['sshd_cpu']:5.2f} s  "
                    f"({checked.bytes / m.wall / 1e6:.0f} MB/s)"
                )
                suite.discard(out, last=rep == suite.reps - 1)
            decrypts.append(floor.measure())
        sshd_lines = len(server.lines())
    _rows(result, results, decrypts, item)
    result.notes.append(
        f"server set-up (sshd, and the file encrypted with crypt4gh.lib.encrypt for a fresh "
        f"key) {setup:.1f} s; rows count the .c4gh bytes ({item.c4gh_size}); ebi-mirror's "
        "output is the decrypted file checked by MD5 (and by the SHA256 EGA publishes, by "
        "the client), sftp's the .c4gh file checked by its MD5"
    )
    result.info.update(
        dataset=DATASET,
        file=item.accession,
        size=item.size,
        c4gh_size=item.c4gh_size,
        sha256=sha256,
        setup_s=setup,
        sshd_log_lines=sshd_lines,
        mirror_left_out=why,
    )
    return result


def _rows(
    result: WorkloadResult,
    results: dict[str, list[Measurement]],
    decrypts: list[Measurement],
    item: OutboxFile,
) -> None:
    nbytes = item.c4gh_size
    sftp = results[SFTP]
    # The machine's two cores carry sshd, the SSH transport and the decryption and hashes
    # together: no client can finish before that CPU, halved, has been spent.
    floors = [
        Measurement.in_process(
            FLOOR,
            ["max(sftp wall, decrypt+hashes wall, (sftp cpu + sshd cpu + decrypt cpu) / 2)"],
            max(s.wall, d.wall, (s.cpu + s.extra.get("sshd_cpu", 0.0) + d.cpu) / 2),
            s.cpu + s.extra.get("sshd_cpu", 0.0) + d.cpu,
            sftp_wall=s.wall,
            sftp_cpu=s.cpu,
            sshd_cpu=s.extra.get("sshd_cpu", 0.0),
            decrypt_wall=d.wall,
            decrypt_cpu=d.cpu,
        )
        for s, d in zip(sftp, decrypts, strict=True)
    ]
    ours = results.get(MIRROR)
    for tool, runs in results.items():
        ratio = None if tool == MIRROR or ours is None else median_ratio(ours, runs)
        result.rows.append(Row(tool=tool, runs=runs, files=1, bytes=nbytes, ratio=ratio))
    for tool, runs in ((DECRYPT, decrypts), (FLOOR, floors)):
        ratio = None if ours is None else median_ratio(ours, runs)
        result.rows.append(Row(tool=tool, runs=runs, files=1, bytes=nbytes, ratio=ratio))
    if ours is not None:
        sftp_row = next(r for r in result.rows if r.tool == SFTP)
        target = Target(
            what=f"{KEY} wall ebi-mirror / sftp get",
            value=sftp_row.ratio or 0.0,
            op="<=",
            limit=LIMIT,
        )
        sftp_row.target = f"<= {LIMIT:.2f}"
        sftp_row.passed = target.passed
        result.targets.append(target)
    rate = statistics.median(nbytes / s.wall / 1e6 for s in sftp)
    result.info.update(sftp_mb_s=rate)
