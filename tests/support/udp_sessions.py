#!/usr/bin/env python3
"""Many UDP sessions at once: COUNT sockets on HOST, each sending one
datagram to PORT, at most RATE a second; prints how many got an answer
within WAIT seconds of the last send. Bounded in count and time."""
import selectors
import socket
import sys
import time

host, port, count, rate, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
sel = selectors.DefaultSelector()
sockets = []
answered = 0
start = time.monotonic()


def drain(timeout):
    global answered
    for key, _ in sel.select(timeout):
        try:
            key.fileobj.recv(65535)
            answered += 1
        except OSError:
            pass
        sel.unregister(key.fileobj)


for i in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    sockets.append(s)
    s.sendto(b"session %d" % i, ("127.0.0.1", port))
    # Pace the sends: never ahead of RATE a second.
    ahead = (i + 1) / rate - (time.monotonic() - start)
    if ahead > 0:
        drain(ahead)
deadline = time.monotonic() + wait
while answered < count and time.monotonic() < deadline:
    drain(min(0.1, max(0.0, deadline - time.monotonic())))
print(answered)
for s in sockets:
    s.close()
