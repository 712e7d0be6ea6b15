#!/usr/bin/env python3
"""End-to-end UART check under QEMU: host <-> TCP <-> QEMU UART0 <-> firmware echo loop.

Boots the firmware ELF through qemu-run.sh with LDL_SERIAL=tcp:127.0.0.1:PORT,server,nowait,
connects to the port, sends every byte value except 0x04 (in several chunks), checks the
echo byte for byte, sends 0x04 (EOT, echoed too), and checks that QEMU exits 0 and the decoded
defmt log reports the session. Loopback only; every wait is bounded.

usage: uart_echo_check.py ELF [--timeout SECONDS]
"""

import argparse
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "..", "qemu-run.sh")
EOT = 0x04


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


def recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    got = bytearray()
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"echo: got {len(got)} of {n} bytes")
        sock.settimeout(left)
        chunk = sock.recv(n - len(got))
        if not chunk:
            raise RuntimeError(f"connection closed after {len(got)} of {n} bytes")
        got += chunk
    return bytes(got)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("elf")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    port = free_port()
    env = dict(os.environ)
    env["LDL_SERIAL"] = f"tcp:127.0.0.1:{port},server,nowait"
    env["LDL_TIMEOUT"] = str(int(args.timeout) + 5)
    env.pop("LDL_STORE", None)
    deadline = time.monotonic() + args.timeout
    proc = subprocess.Popen(
        [RUNNER, args.elf], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        with connect(port, proc, deadline) as sock:
            payload = bytes(b for b in range(256) if b != EOT) * 4
            for i in range(0, len(payload), 100):
                part = payload[i : i + 100]
                sock.sendall(part)
                echo = recv_exact(sock, len(part), deadline)
                if echo != part:
                    print(f"FAIL: echo mismatch at chunk {i}: sent {part[:16].hex()}..., got {echo[:16].hex()}...")
                    return 1
            sock.sendall(bytes([EOT]))
            if recv_exact(sock, 1, deadline) != bytes([EOT]):
                print("FAIL: EOT not echoed")
                return 1
        out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except Exception as e:  # noqa: BLE001 - report any failure and clean up
        proc.kill()
        out, _ = proc.communicate()
        print(f"FAIL: {e}\n--- runner output ---\n{out.decode(errors='replace')}")
        return 1
    log = out.decode(errors="replace")
    expected = f"UART echo done: {len(payload) + 1} bytes, EOT: true"
    if proc.returncode != 0 or expected not in log:
        print(f"FAIL: exit status {proc.returncode}, expected log line {expected!r}\n--- runner output ---\n{log}")
        return 1
    print(f"UART echo OK: {len(payload) + 1} bytes over tcp:127.0.0.1:{port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
