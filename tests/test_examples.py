"""The examples run as a reader would run them, on both backends."""

import signal
import socket
import subprocess
import sys

from conftest import REPO, recv_exactly


def test_echo_server_example(backend):
    proc = subprocess.Popen([sys.executable, "examples/echo_server.py", "--backend", backend, "--port", "0"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:") and f"backend={backend}" in line, line
        port = int(line.split(":")[1].split()[0])
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        for round_ in range(20):
            for i, client in enumerate(clients):
                client.sendall(b"%d:%d;" % (i, round_))
            for i, client in enumerate(clients):
                want = b"%d:%d;" % (i, round_)
                assert recv_exactly(client, len(want)) == want
        clients[0].close()   # EOF path: the server closes its side and goes on
        assert clients[1].sendall(b"still here") is None and clients[1].recv(100) == b"still here"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, proc.stderr.read()
        for client in clients[1:]:
            client.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
