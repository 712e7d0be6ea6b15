#!/usr/bin/env python3
"""End-to-end protocol check under QEMU, without a model: host <-> TCP <-> QEMU UART0 <->
firmware serial loop. Sends Info (expects an Info reply saying "no model"), a garbage frame
(expects an Error reply) and a Classify (expects Error NO_MODEL = 48). Frames as in
core/PROTOCOL.md: COBS(postcard payload ++ CRC-32 LE) ++ 0x00. Loopback only, bounded waits;
QEMU is killed at the end.

usage: protocol_check.py ELF [--timeout SECONDS]
"""

import argparse
import os
import socket
import subprocess
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "..", "qemu-run.sh")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port: int, proc: subprocess.Popen, deadline: float) -> socket.socket:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"QEMU exited early with status {proc.returncode}")
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=1.0)
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"could not connect to 127.0.0.1:{port}")


def cobs_encode(data: bytes) -> bytes:
    out, block = bytearray(), bytearray()
    for b in data:
        if b == 0:
            out += bytes([len(block) + 1]) + block
            block = bytearray()
        else:
            block.append(b)
            if len(block) == 254:
                out += b"\xff" + block
                block = bytearray()
    out += bytes([len(block) + 1]) + block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(data):
        code = data[i]
        out += data[i + 1 : i + code]
        i += code
        if code != 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


def frame(payload: bytes) -> bytes:
    return cobs_encode(payload + zlib.crc32(payload).to_bytes(4, "little")) + b"\x00"


def recv_frame(sock: socket.socket, deadline: float) -> bytes:
    got = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply")
        sock.settimeout(left)
        b = sock.recv(1)
        if not b:
            raise RuntimeError("connection closed")
        if b == b"\x00":
            raw = cobs_decode(bytes(got))
            payload, crc = raw[:-4], raw[-4:]
            assert zlib.crc32(payload).to_bytes(4, "little") == crc, "bad CRC in reply"
            return payload
        got += b


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("elf")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    port = free_port()
    env = dict(os.environ)
    env["LDL_SERIAL"] = f"tcp:127.0.0.1:{port},server,nowait"
    # No LDL_TIMEOUT: `timeout` would move QEMU out of the process group killed below.
    env.pop("LDL_TIMEOUT", None)
    env.pop("LDL_STORE", None)
    env.pop("LDL_MODEL", None)
    deadline = time.monotonic() + args.timeout
    proc = subprocess.Popen([RUNNER, args.elf], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        with connect(port, proc, deadline) as sock:
            # Info, id 7: version 3, id 7, Request::Info (tag 0).
            sock.sendall(frame(bytes([3, 7, 0])))
            p = recv_frame(sock, deadline)
            # version 3, id 7, Response::Info (0), protocol 3, ModelStatus::Absent (0)
            if p[:5] != bytes([3, 7, 0, 3, 0]):
                print(f"FAIL: Info reply {p.hex()}")
                return 1
            sock.sendall(b"\x01\x02\x03\x00")
            p = recv_frame(sock, deadline)
            if p[:3] != bytes([3, 0, 6]):  # id 0, Response::Error (6)
                print(f"FAIL: garbage reply {p.hex()}")
                return 1
            # Classify, id 8, 784 zero floats: tag 1, length 3136 = varint c0 18.
            sock.sendall(frame(bytes([3, 8, 1, 0xC0, 0x18]) + bytes(3136)))
            p = recv_frame(sock, deadline)
            if p != bytes([3, 8, 6, 48]):
                print(f"FAIL: Classify without model: {p.hex()}")
                return 1
        print("ok: Info, garbage -> Error, Classify without model -> Error 48")
        return 0
    finally:
        # The runner's whole process group: the script, QEMU, defmt-print.
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pass


if __name__ == "__main__":
    sys.exit(main())
