# balance alone in an image: the glibc executable, exactly the libraries and
# loader it loads, /etc/services for port names, a passwd/group entry for the
# user balance (10001) and /run/balance for the control socket. Nothing is pulled: the
# context is dist/image, whose rootfs/ ./scripts/image makes from this
# machine's files (then builds and tags localhost/balance with podman):
#   ./scripts/build && ./scripts/image
#   podman run --rm --network host --read-only localhost/balance 8080 10.0.0.1:80 10.0.0.2:80
# With another engine: ./scripts/image --context, then
#   docker build -f Dockerfile -t balance dist/image
FROM scratch
COPY rootfs/ /
USER 10001:10001
# The control socket (podman exec CONTAINER balance -c show PORT) lives in a
# volume, so a read-only root filesystem still serves and answers; balance
# makes control/ in it, owner-only.
ENV BALANCE_CONTROL_DIR=/run/balance/control
VOLUME ["/run/balance"]
# Foreground, so the engine keeps the process, its output and its signals.
ENTRYPOINT ["/usr/bin/balance", "-f"]
