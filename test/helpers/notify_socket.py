"""A fake sd_notify socket for tests (test/helpers/notify-socket.ts).

Binds an AF_UNIX SOCK_DGRAM socket at argv[1], as PID 1 does for $NOTIFY_SOCKET (sd_notify(3)),
and prints every datagram as one JSON line: {"msg": "READY=1\\nSTATUS=...", "pid": <sender>}.
SO_PASSCRED makes the kernel attach the sender's credentials, so "pid" is the PID systemd would
attribute the message to (NotifyAccess= in systemd.exec(5) is checked against it).

File descriptors sent along (systemd-notify's BARRIER=1 passes the write end of a pipe and waits
until the receiver closes it, sd_notify_barrier(3)) are closed at once, as systemd does.
The line "listening" is printed once the socket is bound. SIGTERM ends the script.
"""

import array
import json
import os
import signal
import socket
import struct
import sys


def main() -> None:
    path = sys.argv[1]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(path)
    # A service running as its own user (User=dmgw) must be able to send here too.
    os.chmod(path, 0o666)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(json.dumps({"listening": path}), flush=True)
    fd_size = array.array("i").itemsize
    cred_size = struct.calcsize("3i")
    while True:
        data, ancdata, _flags, _addr = sock.recvmsg(
            4096, socket.CMSG_SPACE(cred_size) + socket.CMSG_SPACE(16 * fd_size)
        )
        pid = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = struct.unpack("3i", payload[:cred_size])
            elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - (len(payload) % fd_size)])
                for fd in fds:
                    os.close(fd)
        print(json.dumps({"msg": data.decode("utf-8", "replace"), "pid": pid}), flush=True)


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, SystemExit):
        pass
